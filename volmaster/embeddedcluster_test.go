package volmaster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

// clusterMember is one volmaster of an embedded cluster, run in process.
type clusterMember struct {
	name, api, peer, etcd, dir string
	cancel                     context.CancelFunc
	done                       chan error
}

// stop ends the volmaster (and its etcd member) and waits for it.
func (m *clusterMember) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}

// Embedded cluster mode: three volmasters whose embedded etcd members form
// one cluster. One stops: the API still answers through the other two (a
// client given all three URLs fails over) and writes go on; it starts again
// on its data, rejoins, and serves what was written while it was away.
func TestEmbeddedClusterOfThreeVolmasters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	base, err := etcdtest.FreePorts(12)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for i := range 12 {
		ports = append(ports, base+i)
	}
	var ms []*clusterMember
	var cluster, urls []string
	for i := range 3 {
		m := &clusterMember{name: fmt.Sprintf("m%d", i+1), api: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			peer: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]), etcd: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]), dir: t.TempDir()}
		ms = append(ms, m)
		cluster = append(cluster, m.name+"="+m.peer)
		urls = append(urls, "http://"+m.api)
	}
	// All stop at once: a member left alone without quorum would make the
	// others' shutdown wait for etcd calls that cannot succeed.
	t.Cleanup(func() {
		for _, m := range ms {
			if m.cancel != nil {
				m.cancel()
			}
		}
		for _, m := range ms {
			m.stop()
		}
	})
	// startAs runs m as a member of initial (joining a running cluster if
	// join) and returns a channel closed once its API listens (a member of
	// a new cluster is ready only when a quorum is).
	startAs := func(m *clusterMember, initial string, join bool) chan struct{} {
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel, m.done = cancel, make(chan error, 1)
		started := make(chan struct{})
		go func() {
			m.done <- Serve(ctx, Options{
				Listen: m.api, DataDir: m.dir, MountRoot: filepath.Join(m.dir, "mnt"),
				EtcdListen: m.etcd, EtcdPeerListen: m.peer,
				EtcdName: m.name, EtcdInitialCluster: initial, EtcdJoin: join, Log: quietLog(),
				Started: func(string, []string) { close(started) },
			})
		}()
		return started
	}
	start := func(m *clusterMember) chan struct{} { return startAs(m, strings.Join(cluster, ","), false) }
	wait := func(m *clusterMember, started chan struct{}) {
		t.Helper()
		select {
		case <-started:
		case err := <-m.done:
			t.Fatalf("volmaster %s: %v", m.name, err)
		case <-time.After(2 * time.Minute):
			t.Fatalf("volmaster %s did not start within 2 minutes", m.name)
		}
	}
	var starts []chan struct{}
	for _, m := range ms {
		starts = append(starts, start(m))
	}
	for i, m := range ms {
		wait(m, starts[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := client.New(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PutPolicy(ctx, "p", []byte(`{"backend":"nfs"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: "p", Name: "before"}); err != nil {
		t.Fatal(err)
	}
	healthy := func(st config.ClusterStatus) (n int, leader string) {
		for _, m := range st.Etcd {
			if m.Healthy {
				n++
			}
			if m.Leader {
				leader = m.Name
			}
		}
		return n, leader
	}
	st, err := api.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, l := healthy(st); len(st.Etcd) != 3 || n != 3 || l == "" {
		t.Fatalf("etcd members %+v; want 3 healthy with a leader", st.Etcd)
	}

	// The first volmaster (the client's first URL) stops, with its member.
	ms[0].stop()
	if _, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: "p", Name: "while-m1-down"}); err != nil {
		t.Fatalf("create with one of three volmasters down: %v", err)
	}
	if st, err = api.Cluster(ctx); err != nil {
		t.Fatal(err)
	}
	if n, l := healthy(st); n != 2 || l == "" || l == "m1" {
		t.Fatalf("etcd members with m1 down: %+v; want 2 healthy with a leader other than m1", st.Etcd)
	}

	// It starts again on its data and rejoins.
	wait(ms[0], start(ms[0]))
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := api.Cluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := healthy(st); n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("m1 did not rejoin within a minute: %+v", st.Etcd)
		}
		time.Sleep(100 * time.Millisecond) // polling the view, with the deadline above
	}
	only, err := client.New(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	refs, err := only.Volumes(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.Name)
	}
	if !slices.Contains(names, "before") || !slices.Contains(names, "while-m1-down") {
		t.Fatalf("restarted m1 lists %v; want the volumes written before and while it was down", names)
	}

	// A fourth joins the running cluster (etcdctl member add, then
	// --etcd-join), serves the data, and leaves again (member remove).
	m4 := &clusterMember{name: "m4", api: fmt.Sprintf("127.0.0.1:%d", ports[9]),
		peer: fmt.Sprintf("http://127.0.0.1:%d", ports[10]), etcd: fmt.Sprintf("http://127.0.0.1:%d", ports[11]), dir: t.TempDir()}
	ms = append(ms, m4)
	ecli, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[1].etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer ecli.Close()
	// etcd refuses a membership change ("unhealthy cluster") until every
	// member has been connected for its 5 s health interval: the restarted
	// m1 (and later m4) are young.
	reconfigure := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := f()
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
	reconfigure("member add m4", func() (err error) { added, err = ecli.MemberAdd(ctx, []string{m4.peer}); return err })
	wait(m4, startAs(m4, strings.Join(append(slices.Clone(cluster), m4.name+"="+m4.peer), ","), true))
	if refs, err := client.New("http://" + m4.api); err != nil {
		t.Fatal(err)
	} else if vols, err := refs.Volumes(ctx, "p"); err != nil || len(vols) != 2 {
		t.Fatalf("joined m4 lists %v (%v); want the 2 volumes", vols, err)
	}
	if st, err = api.Cluster(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := healthy(st); len(st.Etcd) != 4 || n != 4 {
		t.Fatalf("after m4 joined: %+v; want 4 healthy members", st.Etcd)
	}
	reconfigure("member remove m4", func() error { _, err := ecli.MemberRemove(ctx, added.Member.ID); return err })
	m4.stop()
	if st, err = api.Cluster(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := healthy(st); len(st.Etcd) != 3 || n != 3 {
		t.Fatalf("after m4 left: %+v; want 3 healthy members", st.Etcd)
	}
}

// Embedded cluster mode refuses what would not work or would expose etcd.
func TestEmbeddedClusterFlagsChecked(t *testing.T) {
	base := Options{Listen: "127.0.0.1:0", EtcdListen: "http://127.0.0.1:9379", EtcdPeerListen: "http://127.0.0.1:9380"}
	for _, c := range []struct {
		name string
		o    func(*Options)
		want string
	}{
		{"no name", func(o *Options) { o.EtcdInitialCluster = "a=http://127.0.0.1:9380" }, "--etcd-name"},
		{"peer beyond loopback", func(o *Options) {
			o.EtcdInitialCluster, o.EtcdName, o.EtcdPeerListen = "a=http://10.0.0.5:9380", "a", "http://10.0.0.5:9380"
		}, "--insecure-listen-any"},
		{"join without cluster", func(o *Options) { o.EtcdJoin = true }, "--etcd-initial-cluster"},
		{"with --etcd", func(o *Options) { o.Etcd, o.EtcdInitialCluster = []string{"http://e:2379"}, "a=http://127.0.0.1:9380" }, "--etcd"},
	} {
		o := base
		c.o(&o)
		if err := checkExposure(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	// With --auth the peers authenticate each other (TLS, the shared CA):
	// a peer port beyond loopback is fine.
	o := base
	o.EtcdInitialCluster, o.EtcdName, o.Auth = "a=http://10.0.0.5:9380", "a", true
	o.EtcdPeerListen = "http://10.0.0.5:9380"
	if err := checkExposure(o); err != nil {
		t.Errorf("--auth member with a peer port beyond loopback: %v", err)
	}
}

// An --auth member of an embedded cluster never makes a CA of its own (its
// peers would refuse it): without the shared one it stops, saying how to
// make it, and leaves the data dir without one.
func TestEmbeddedClusterAuthNeedsSharedCA(t *testing.T) {
	dir := t.TempDir()
	_, err := embeddedEtcdPKI(dir, true, "http://127.0.0.1:9379", "http://127.0.0.1:9380")
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "volmaster etcd-ca") {
		t.Fatalf("cluster member without the shared CA: %v", err)
	}
	if !missing(filepath.Join(EtcdPKIDir(dir), "ca.crt")) {
		t.Fatal("a CA was made in the data dir")
	}
	shared := filepath.Join(t.TempDir(), "ca")
	if err := NewEtcdClusterCA(shared); err != nil {
		t.Fatal(err)
	}
	if err := NewEtcdClusterCA(shared); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("etcd-ca over an existing CA: %v", err)
	}
	if err := os.MkdirAll(EtcdPKIDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(shared, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(EtcdPKIDir(dir), f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := embeddedEtcdPKI(dir, true, "http://127.0.0.1:9379", "http://10.0.0.5:9380")
	if err != nil {
		t.Fatal(err)
	}
	// Its member certificate is signed by the shared CA and valid for the
	// peer host.
	pair, err := tls.LoadX509KeyPair(files.server.Cert, files.server.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	b, _ := os.ReadFile(filepath.Join(shared, "ca.crt"))
	roots.AppendCertsFromPEM(b)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.5"}); err != nil {
		t.Errorf("member certificate for the peer host 10.0.0.5 under the shared CA: %v", err)
	}
	if got := httpsCluster("a=http://h1:2380,b=https://h2:2380"); got != "a=https://h1:2380,b=https://h2:2380" {
		t.Errorf("httpsCluster: %s", got)
	}
}
