package systemtests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

// embeddedMember is one volmaster process of an embedded cluster, on fixed
// ports: every member's peer URL is in every member's flags before any
// starts.
type embeddedMember struct {
	name, dir, peer string
	args            []string
	vm              *volmaster
}

// launch starts m's volmaster and returns a wait that blocks until it
// listens (a member of a new cluster does once a quorum runs).
func (m *embeddedMember) launch(t *testing.T) func() {
	p, wait := launchProc(t, nil, nil, "volmaster", m.args, "volmaster API", "etcd client URL")
	m.vm = &volmaster{proc: p}
	return func() {
		t.Helper()
		wait(t)
		m.vm.URL, m.vm.EtcdURL = p.lines["volmaster API"], p.lines["etcd client URL"]
	}
}

// startEmbeddedCluster runs n volmasters whose embedded etcd members form
// one cluster, each with its own data dir (made ready by prep, if set) and
// the flags extra. Ports come from below the ephemeral range (etcdtest).
func startEmbeddedCluster(t *testing.T, n int, prep func(dir string), extra ...string) []*embeddedMember {
	t.Helper()
	base, err := etcdtest.FreePorts(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*embeddedMember
	var cluster []string
	for i := range n {
		m := &embeddedMember{name: fmt.Sprintf("m%d", i+1), dir: t.TempDir(), peer: fmt.Sprintf("http://127.0.0.1:%d", base+3*i+1)}
		if prep != nil {
			prep(m.dir)
		}
		ms = append(ms, m)
		cluster = append(cluster, m.name+"="+m.peer)
	}
	for i, m := range ms {
		m.args = memberArgs(m, base+3*i, strings.Join(cluster, ","), extra)
	}
	var waits []func()
	for _, m := range ms {
		waits = append(waits, m.launch(t))
	}
	// All are told to stop before any is waited for: the last member left
	// without a quorum would make its volmaster's shutdown wait on etcd.
	t.Cleanup(func() {
		for _, m := range ms {
			if !m.vm.stopped {
				_ = m.vm.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, m := range ms {
			_ = m.vm.stop()
		}
	})
	for _, w := range waits {
		w()
	}
	return ms
}

// memberArgs are the flags of member m whose API listens on port, its
// peer URL on port+1 and its etcd client URL on port+2.
func memberArgs(m *embeddedMember, port int, cluster string, extra []string) []string {
	return append([]string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", m.dir, "--mount-root", filepath.Join(m.dir, "mnt"),
		"--etcd-listen", fmt.Sprintf("http://127.0.0.1:%d", port+2), "--etcd-peer-listen", m.peer,
		"--etcd-name", m.name, "--etcd-initial-cluster", cluster,
	}, extra...)
}

// memberURLs joins the members' API URLs, first's first.
func memberURLs(first *embeddedMember, ms []*embeddedMember) string {
	urls := []string{first.vm.URL}
	for _, m := range ms {
		if m != first {
			urls = append(urls, m.vm.URL)
		}
	}
	return strings.Join(urls, ",")
}

// volcliOK runs volcli through urls with token (none if empty) and fails the
// test unless it exits 0; it returns stdout.
func volcliOK(t *testing.T, urls, token, stdin string, args ...string) string {
	t.Helper()
	if token != "" {
		args = append([]string{"--token", token}, args...)
	}
	out, e, code := volcli(t, urls, stdin, args...)
	if code != 0 {
		t.Fatalf("volcli --volmaster %s %v: exit %d: %s", urls, args, code, e)
	}
	return out
}

// haTimes are the seconds an embedded cluster took to recover from losing a
// volmaster with its etcd member.
type haTimes struct {
	answered, elected, wrote, rejoined float64
}

func (h haTimes) log(t *testing.T, what string) {
	t.Logf("%s: kill -9 of the leader's volmaster -> API answered %.1fs, new etcd leader in view %.1fs, new writes done %.1fs; "+
		"restart -> member healthy %.1fs after the restart began", what, h.answered, h.elected, h.wrote, h.rejoined)
}

// killLeaderAndRejoin kills -9 the volmaster whose etcd member leads, checks
// that the others answer with every record of want (volume names) through
// the client list that names the killed one first, calls during with that
// list for new writes, restarts the killed volmaster on its data
// dir and waits until its member is healthy again. It returns the killed
// member and the times measured.
func killLeaderAndRejoin(t *testing.T, ms []*embeddedMember, token string, want []string, during func(urls string)) (*embeddedMember, haTimes) {
	t.Helper()
	all := memberURLs(ms[0], ms)
	st := waitViewAs(t, all, token, "3 volmasters and 3 healthy etcd members with a leader", func(st config.ClusterStatus) bool {
		h, l := etcdSummary(st)
		return len(st.Volmasters) == len(ms) && h == len(ms) && l != ""
	})
	_, leader := etcdSummary(st)
	i := slices.IndexFunc(ms, func(m *embeddedMember) bool { return m.name == leader })
	if i < 0 {
		t.Fatalf("etcd leader %q is none of the volmasters' members: %+v", leader, st.Etcd)
	}
	killed := ms[i]
	var rest []string
	for _, m := range ms {
		if m != killed {
			rest = append(rest, m.vm.URL)
		}
	}
	order := memberURLs(killed, ms)
	if err := killed.vm.signal(syscall.SIGKILL); err == nil {
		t.Fatalf("volmaster %s exited cleanly after SIGKILL?", killed.name)
	}
	var h haTimes
	t0 := time.Now()

	// Reads answer through the others (the client skips the dead URL).
	deadline := t0.Add(30 * time.Second)
	for {
		args := []string{"volume", "list-all"}
		if token != "" {
			args = append([]string{"--token", token}, args...)
		}
		out, e, code := volcli(t, order, "", args...)
		if code == 0 {
			if got := strings.Fields(out); !containsAll(got, want) {
				t.Fatalf("with %s killed, volume list-all lists %v; want every one of %v", killed.name, got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to volume list-all within 30s of %s's kill: %s", killed.name, e)
		}
		time.Sleep(100 * time.Millisecond) // polling the API, with the deadline above
	}
	h.answered = time.Since(t0).Seconds()
	st = waitViewAs(t, order, token, "2 healthy etcd members and a new leader", func(st config.ClusterStatus) bool {
		n, l := etcdSummary(st)
		return n == len(ms)-1 && l != "" && l != killed.name
	})
	h.elected = time.Since(t0).Seconds()
	for _, m := range st.Etcd {
		if m.Name == killed.name && m.Healthy {
			t.Fatalf("killed member %s shown healthy: %+v", killed.name, m)
		}
	}
	// Each survivor alone holds every record written before.
	for _, u := range rest {
		for _, v := range want {
			volcliOK(t, u, token, "", "volume", "get", v)
		}
	}
	during(order)
	h.wrote = time.Since(t0).Seconds()

	// The killed volmaster starts again on its data dir (its flags still
	// name the initial cluster, which etcd now ignores) and rejoins.
	t1 := time.Now()
	killed.launch(t)()
	waitViewAs(t, killed.vm.URL, token, "the restarted member healthy", func(st config.ClusterStatus) bool {
		n, _ := etcdSummary(st)
		return n == len(ms) && slices.ContainsFunc(st.Etcd, func(m config.EtcdMember) bool { return m.Name == killed.name && m.Healthy })
	})
	h.rejoined = time.Since(t1).Seconds()
	return killed, h
}

func containsAll(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// Embedded cluster mode with the real binaries: three volmasters whose
// embedded etcd members form one cluster. Policies and volumes are written
// through each; the one whose member leads etcd is killed with -9; the
// other two answer (a client names the dead one first), hold every record
// and take new writes; the killed one restarts on its data dir, rejoins
// (healthy in GET /v1/cluster) and serves what was written while it was down.
func TestEmbeddedClusterKill9Leader(t *testing.T) {
	ms := startEmbeddedCluster(t, 3, nil)
	var want []string
	for i, m := range ms {
		p := fmt.Sprintf("p%d", i+1)
		volcliOK(t, m.vm.URL, "", `{"backend":"nfs"}`, "policy", "upload", p)
		for j := range 3 {
			v := fmt.Sprintf("%s/before-%d", p, j)
			volcliOK(t, m.vm.URL, "", "", "volume", "create", v)
			want = append(want, v)
		}
	}
	var wrote []string
	killed, h := killLeaderAndRejoin(t, ms, "", want, func(urls string) {
		volcliOK(t, urls, "", `{"backend":"nfs"}`, "policy", "upload", "during")
		for _, v := range []string{"p1/during", "during/v"} {
			volcliOK(t, urls, "", "", "volume", "create", v)
			wrote = append(wrote, v)
		}
	})
	out := volcliOK(t, killed.vm.URL, "", "", "volume", "list-all")
	if got := strings.Fields(out); !containsAll(got, append(want, wrote...)) {
		t.Fatalf("restarted %s lists %v; want %v and %v", killed.name, got, want, wrote)
	}
	volcliOK(t, killed.vm.URL, "", "", "policy", "get", "during")
	// And it takes writes again.
	volcliOK(t, killed.vm.URL, "", "", "volume", "create", "during/after-rejoin")
	for _, m := range ms {
		volcliOK(t, m.vm.URL, "", "", "volume", "get", "during/after-rejoin")
	}
	h.log(t, "embedded cluster, killed "+killed.name)
}

// copyCA returns a prep for startEmbeddedCluster that puts the shared CA of
// caDir into a volmaster's DATA-DIR/etcd-pki, as an operator copies it.
func copyCA(t *testing.T, caDir string) func(string) {
	return func(dir string) {
		pki := filepath.Join(dir, "etcd-pki")
		if err := os.MkdirAll(pki, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"ca.crt", "ca.key"} {
			b, err := os.ReadFile(filepath.Join(caDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pki, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Embedded cluster mode with --auth: the members share one etcd CA made by
// `volmaster etcd-ca` and copied to each. A member without it is refused at
// start; three with it form the cluster over https; exactly one writes the
// bootstrap admin token, which works through every volmaster; a
// certificate from the same CA that is not a member's cannot speak to the
// peer port; the etcd leader's volmaster is killed with -9 and the token,
// records and new tokens keep working through the others and, after its
// restart, through it.
func TestEmbeddedClusterAuth(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	vmBin := filepath.Join(binDir, "volmaster")
	if out, err := execOut(t.Context(), vmBin, "etcd-ca", "--out", caDir); err != nil {
		t.Fatalf("volmaster etcd-ca: %v\n%s", err, out)
	}
	if out, err := execOut(t.Context(), vmBin, "etcd-ca", "--out", caDir); err == nil || !strings.Contains(out, "never replaced") {
		t.Errorf("volmaster etcd-ca over an existing CA: %v\n%s", err, out)
	}
	out, code, _ := runToExit(t, "volmaster", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--auth",
		"--etcd-listen", "http://127.0.0.1:0", "--etcd-peer-listen", "http://127.0.0.1:1",
		"--etcd-name", "x", "--etcd-initial-cluster", "x=http://127.0.0.1:1")
	if code == 0 || !strings.Contains(out, "volmaster etcd-ca") {
		t.Errorf("an --auth member without the shared CA: exit %d\n%s", code, out)
	}

	ms := startEmbeddedCluster(t, 3, copyCA(t, caDir), "--auth")
	var admin string
	var writers []string
	for _, m := range ms {
		if !strings.HasPrefix(m.vm.EtcdURL, "https://") {
			t.Errorf("member %s serves etcd at %s, want https", m.name, m.vm.EtcdURL)
		}
		if b, err := os.ReadFile(filepath.Join(m.dir, "admin.token")); err == nil {
			admin, writers = strings.TrimSpace(string(b)), append(writers, m.name)
		}
	}
	if len(writers) != 1 {
		t.Fatalf("bootstrap admin token written by %v; want exactly one volmaster", writers)
	}
	for i, m := range ms {
		if _, e, code := volcli(t, m.vm.URL, "", "policy", "list"); code != 1 || !strings.Contains(e, "bearer token is required") {
			t.Errorf("%s without a token: exit %d %s", m.name, code, e)
		}
		volcliOK(t, m.vm.URL, admin, `{"backend":"nfs"}`, "policy", "upload", fmt.Sprintf("a%d", i+1))
	}
	var want []string
	for i := range ms {
		v := fmt.Sprintf("a%d/before", i+1)
		volcliOK(t, ms[(i+1)%len(ms)].vm.URL, admin, "", "volume", "create", v)
		want = append(want, v)
	}

	// The peer port takes the members' certificate, and no other from the
	// shared CA (a volsupervisor's from etcd-client-cert).
	if out, err := execOut(t.Context(), vmBin, "etcd-client-cert", "--data-dir", ms[0].dir, "--name", "sup1", "--out", filepath.Join(ms[0].dir, "sup1")); err != nil {
		t.Fatalf("volmaster etcd-client-cert: %v\n%s", err, out)
	}
	peerGet := func(cert, key string) error {
		tlsCfg, err := client.TLSConfig(filepath.Join(caDir, "ca.crt"), cert, key)
		if err != nil {
			return err
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		resp, err := hc.Get(strings.Replace(ms[1].peer, "http://", "https://", 1) + "/members")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	pkiDir := filepath.Join(ms[0].dir, "etcd-pki")
	if err := peerGet(filepath.Join(pkiDir, "etcd.crt"), filepath.Join(pkiDir, "etcd.key")); err != nil {
		t.Errorf("a member's certificate on another member's peer port: %v", err)
	}
	if err := peerGet(filepath.Join(ms[0].dir, "sup1", "sup1.crt"), filepath.Join(ms[0].dir, "sup1", "sup1.key")); err == nil {
		t.Errorf("a volsupervisor's certificate from the shared CA was let into the peer port")
	}

	var tenant string
	killed, h := killLeaderAndRejoin(t, ms, admin, want, func(urls string) {
		volcliOK(t, urls, admin, "", "volume", "create", "a1/during")
		tenant = strings.TrimSpace(volcliOK(t, urls, admin, "", "token", "create", "--role", "tenant", "--policy", "a1"))
		for _, m := range ms {
			if !m.vm.stopped { // not the killed one
				if out := volcliOK(t, m.vm.URL, tenant, "", "volume", "list-all"); !strings.Contains(out, "a1/during") || strings.Contains(out, "a2/") {
					t.Errorf("tenant token through %s: %q", m.name, out)
				}
			}
		}
	})
	if out := volcliOK(t, killed.vm.URL, tenant, "", "volume", "list-all"); !strings.Contains(out, "a1/during") {
		t.Errorf("tenant token made while %s was down, through it after its restart: %q", killed.name, out)
	}
	volcliOK(t, killed.vm.URL, admin, "", "volume", "create", "a2/after-rejoin")
	joinWithAuth(t, ms, caDir, admin)
	if !slices.Contains(writers, killed.name) {
		if _, err := os.Stat(filepath.Join(killed.dir, "admin.token")); err == nil {
			t.Errorf("restarted %s wrote a second bootstrap token", killed.name)
		}
	}
	h.log(t, "embedded cluster with --auth, killed "+killed.name)
}

// joinWithAuth adds a fourth --auth volmaster to the running cluster ms the
// documented way (the shared CA copied to its data dir, etcd's member add
// with a member's certificate, then --etcd-join), checks that admin works
// through it and the records are there, and removes it again.
func joinWithAuth(t *testing.T, ms []*embeddedMember, caDir, admin string) {
	t.Helper()
	base, err := etcdtest.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	m4 := &embeddedMember{name: "m4", dir: t.TempDir(), peer: fmt.Sprintf("http://127.0.0.1:%d", base+1)}
	copyCA(t, caDir)(m4.dir)
	var cluster []string
	for _, m := range append(slices.Clone(ms), m4) {
		cluster = append(cluster, m.name+"="+m.peer)
	}
	m4.args = memberArgs(m4, base, strings.Join(cluster, ","), []string{"--auth", "--etcd-join"})

	pkiDir := filepath.Join(ms[0].dir, "etcd-pki")
	tlsCfg, err := client.TLSConfig(filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, "volmaster.crt"), filepath.Join(pkiDir, "volmaster.key"))
	if err != nil {
		t.Fatal(err)
	}
	ecli, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[0].vm.EtcdURL}, DialTimeout: 5 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer ecli.Close()
	// etcd refuses a membership change ("unhealthy cluster") until every
	// member has been connected for its 5 s health interval: the restarted
	// one (and then m4) are young.
	reconfigure := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := f(ctx)
			cancel()
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), rpctypes.ErrUnhealthy.Error()) || time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond) // etcd's own condition, with the deadline above
		}
	}
	var added *clientv3.MemberAddResponse
	reconfigure("member add m4", func(ctx context.Context) (err error) {
		added, err = ecli.MemberAdd(ctx, []string{strings.Replace(m4.peer, "http://", "https://", 1)})
		return err
	})
	m4.launch(t)()
	if !strings.HasPrefix(m4.vm.EtcdURL, "https://") {
		t.Errorf("joined m4 serves etcd at %s, want https", m4.vm.EtcdURL)
	}
	if out := volcliOK(t, m4.vm.URL, admin, "", "volume", "list-all"); !strings.Contains(out, "a1/during") {
		t.Errorf("joined m4 lists %q; want the records", out)
	}
	volcliOK(t, m4.vm.URL, admin, "", "volume", "create", "a3/through-m4")
	waitViewAs(t, ms[0].vm.URL, admin, "4 healthy members", func(st config.ClusterStatus) bool { n, _ := etcdSummary(st); return n == 4 })
	reconfigure("member remove m4", func(ctx context.Context) error { _, err := ecli.MemberRemove(ctx, added.Member.ID); return err })
	_ = m4.vm.stop()
	waitViewAs(t, ms[0].vm.URL, admin, "3 healthy members after m4 left", func(st config.ClusterStatus) bool {
		n, _ := etcdSummary(st)
		return n == 3 && len(st.Etcd) == 3
	})
}
