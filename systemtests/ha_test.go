package systemtests

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/systemtests/etcddev"
)

// clusterView runs volcli info through urls and returns its cluster part.
func clusterView(t *testing.T, urls string) config.ClusterStatus {
	t.Helper()
	return clusterViewAs(t, urls, "")
}

// clusterViewAs is clusterView with a bearer token (none if empty).
func clusterViewAs(t *testing.T, urls, token string) config.ClusterStatus {
	t.Helper()
	args := []string{"info"}
	if token != "" {
		args = []string{"--token", token, "info"}
	}
	out, e, code := volcli(t, urls, "", args...)
	if code != 0 {
		t.Fatalf("volcli info: %s", e)
	}
	var got struct {
		Cluster *config.ClusterStatus `json:"cluster"`
		Err     string                `json:"cluster-error"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Cluster == nil {
		t.Fatalf("volcli info printed no cluster (%v, %s):\n%s", err, got.Err, out)
	}
	return *got.Cluster
}

// waitView polls volcli info until ok holds (30 s at most).
func waitView(t *testing.T, urls, what string, ok func(config.ClusterStatus) bool) config.ClusterStatus {
	t.Helper()
	return waitViewAs(t, urls, "", what, ok)
}

// waitViewAs is waitView with a bearer token (none if empty).
func waitViewAs(t *testing.T, urls, token, what string, ok func(config.ClusterStatus) bool) config.ClusterStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := clusterViewAs(t, urls, token)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 30s: %+v", what, st)
		}
		time.Sleep(200 * time.Millisecond) // polling a process's view, with the deadline above
	}
}

// etcdSummary counts healthy members and names the leader.
func etcdSummary(st config.ClusterStatus) (healthy int, leader string) {
	for _, m := range st.Etcd {
		if m.Healthy {
			healthy++
		}
		if m.Leader {
			leader = m.Name
		}
	}
	return healthy, leader
}

// Two volmaster processes on a real 3-member etcd cluster, volcli and a
// volplugin given both URLs. The etcd leader is killed with -9 and
// restarted, then one volmaster is killed with -9: requests keep working
// through the others, volcli info shows each loss, and the volplugin's
// host lease is never replaced.
func TestHAEtcdClusterTwoVolmasters(t *testing.T) {
	etcd := etcddev.Start(t, 3)
	data := t.TempDir()
	eps := strings.Join(etcd.Endpoints, ",")
	// Both share one local-backend directory, as volmasters share a Ceph
	// cluster.
	vmA := startVolmaster(t, data, "--etcd", eps)
	vmB := startVolmaster(t, data, "--etcd", eps)
	urls := vmA.URL + "," + vmB.URL
	if _, e, code := volcli(t, urls, `{"TTL": 3, "Timeout": 2}`, "global", "upload"); code != 0 {
		t.Fatalf("global upload: %s", e)
	}
	if _, e, code := volcli(t, urls, `{"backend":"local","create":{"size":"16MB"}}`, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	st := waitView(t, urls, "2 volmasters and 3 healthy etcd members", func(st config.ClusterStatus) bool {
		h, l := etcdSummary(st)
		return len(st.Volmasters) == 2 && h == 3 && l != ""
	})
	t.Logf("volmasters %d, etcd members %d, leader %s", len(st.Volmasters), len(st.Etcd), etcd.Leader(t))

	vp := startProc(t, "volplugin", []string{
		"--volmaster", urls, "--plugin-name", "vpsys-ha", "--host-label", "hostA", "--socket-dir", filepath.Join(data, "sock"),
		"--local-data-dir", filepath.Join(data, "local"), "--mount-root", filepath.Join(data, "mnt"),
		"--state-dir", filepath.Join(data, "state", "hostA"), "--metrics-listen", "127.0.0.1:0",
	}, "volplugin socket")
	sock := vp.lines["volplugin socket"]
	leaseID := func() float64 {
		l, _ := pluginInfo(t, sock)["lease"].(map[string]any)
		id, _ := l["id"].(float64)
		return id
	}
	deadline := time.Now().Add(30 * time.Second)
	for leaseID() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("volplugin got no host lease in 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling /info, with the deadline above
	}
	lease := leaseID()

	create := func(name string) {
		t.Helper()
		if _, e, code := volcli(t, urls, "", "volume", "create", "p/"+name); code != 0 {
			t.Fatalf("volume create p/%s: %s", name, e)
		}
	}
	create("before")
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }

	// kill -9 the etcd leader: the others elect one, requests go on.
	old := etcd.Leader(t)
	etcd.Kill(t, old)
	create("etcd-leader-killed")
	step("created a volume with the etcd leader " + old + " killed")
	st = waitView(t, urls, "2 healthy etcd members and a new leader", func(st config.ClusterStatus) bool {
		h, l := etcdSummary(st)
		return h == 2 && l != "" && l != old
	})
	for _, m := range st.Etcd {
		if m.Name == old && (m.Healthy || m.Error == "") {
			t.Fatalf("killed member %s shown as %+v", old, m)
		}
	}
	etcd.Restart(t, old)
	waitView(t, urls, "3 healthy etcd members", func(st config.ClusterStatus) bool { h, _ := etcdSummary(st); return h == 3 })
	create("etcd-leader-back")
	step("etcd leader restarted, all healthy")

	// kill -9 the first volmaster: clients move to the second.
	if err := vmA.signal(syscall.SIGKILL); err == nil {
		t.Fatal("volmaster A exited cleanly after SIGKILL?")
	}
	create("volmaster-a-killed")
	step("created a volume with volmaster A killed")
	waitView(t, vmB.URL, "volmaster A gone from the view", func(st config.ClusterStatus) bool {
		return len(st.Volmasters) == 1 && st.Volmasters[0].URL == vmB.URL
	})
	step("volmaster A gone from the view (its registration lease expired)")
	// Seven renewals (every TTL/3) after A's death span two TTLs: a lease
	// renewed only through A would have expired.
	renewals := map[any]bool{}
	deadline = time.Now().Add(30 * time.Second)
	for len(renewals) < 7 {
		l, _ := pluginInfo(t, sock)["lease"].(map[string]any)
		renewals[l["renewed"]] = true
		if time.Now().After(deadline) {
			t.Fatalf("host lease renewed %d times in 30s after volmaster A was killed", len(renewals)-1)
		}
		time.Sleep(100 * time.Millisecond) // polling /info, with the deadline above
	}
	step("7 host lease renewals through volmaster B")
	if got := leaseID(); got != lease {
		t.Fatalf("host lease changed from %x to %x after volmaster A was killed", int64(lease), int64(got))
	}
	out, e, code := volcli(t, urls, "", "volume", "list", "p")
	if code != 0 {
		t.Fatalf("volume list: %s", e)
	}
	names := strings.Fields(out)
	for _, n := range []string{"before", "etcd-leader-killed", "etcd-leader-back", "volmaster-a-killed"} {
		if !slices.Contains(names, n) {
			t.Fatalf("volume p/%s missing from the list:\n%s", n, out)
		}
	}
}
