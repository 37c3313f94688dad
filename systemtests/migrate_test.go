package systemtests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

// originalDump is the original volplugin's etcd v2 tree (see its README).
const originalDump = "../internal/migrate/testdata/original-etcd/contiv-etcd-v2.json"

// etcdRevision is the current revision of the etcd at url.
func etcdRevision(t *testing.T, url string) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/none")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// getJSON runs volcli --json with args and decodes its output into v.
func getJSON(t *testing.T, url string, v any, args ...string) {
	t.Helper()
	out, e, code := volcli(t, url, "", append([]string{"--json"}, args...)...)
	if code != 0 {
		t.Fatalf("volcli %v: exit %d: %s", args, code, e)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("volcli %v: %v\n%s", args, err, out)
	}
}

// mib is n MiB in bytes: the original made an n MB size an image of n MiB
// (rbd create --size n).
func mib(n int64) int64 { return n << 20 }

// The original's tree, loaded into Debian's etcd 3.4 with the v2 API, is
// imported by volcli migrate from-contiv through a real volmaster: refused
// (nothing written) while a mount lock is in the tree; a dry run writes
// nothing and lists what is not carried over; the import carries every
// policy, revision, volume, runtime and the global config over with the
// meaning the original gave them (the table below, read back with volcli);
// a second import writes nothing.
func TestMigrateFromContiv(t *testing.T) {
	v2 := etcdtest.StartV2(t)
	etcdtest.LoadV2(t, v2, originalDump)
	vm := startVolmaster(t, t.TempDir())
	migrate := func(args ...string) (string, string, int) {
		t.Helper()
		return volcli(t, vm.URL, "", append([]string{"migrate", "from-contiv", "--etcd", v2}, args...)...)
	}

	// A host of the original's still holds a mount lock (it has a TTL, as
	// the original wrote them).
	lock := "/volplugin/users/mount/p/pgdata"
	etcdtest.PutV2(t, v2, lock, `{"Volume":{"policy":"p","name":"pgdata"},"Hostname":"node1","Reason":"Mount"}`, 5*time.Minute)
	rev := etcdRevision(t, vm.EtcdURL)
	if _, e, code := migrate(); code != 4 || !strings.Contains(e, "users/mount/p/pgdata (host node1)") || !strings.Contains(e, "--ignore-locks") {
		t.Fatalf("import with a mount lock: exit %d: %s", code, e)
	}
	out, e, code := migrate("--dry-run", "--ignore-locks")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, e)
	}
	for _, want := range []string{"dry run: nothing was written", "policy  p", "would create", "volume  p/pgdata",
		`ignored lock: users/mount/p/pgdata (host "node1")`, "not carried over", "volume p/sized: create.size = 2GB: the original made 2000 MiB of it",
		"snapshots not adopted: the ceph backend is not configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if got := etcdRevision(t, vm.EtcdURL); got != rev {
		t.Fatalf("etcd revision %d after the refused import and the dry run, %d before", got, rev)
	}
	if out, _, _ := volcli(t, vm.URL, "", "volume", "list-all"); out != "" {
		t.Fatalf("volumes after the dry run: %q", out)
	}

	// The original's volplugins are stopped: the lock goes.
	etcdtest.DeleteV2(t, v2, lock)
	if out, e, code := migrate(); code != 0 {
		t.Fatalf("import: exit %d: %s\n%s", code, e, out)
	} else {
		t.Logf("volcli migrate from-contiv:\n%s", out)
	}

	if out, _, _ := volcli(t, vm.URL, "", "volume", "list-all"); out != "p/pgdata\np/redis\np/sized\np/web\n" {
		t.Errorf("volume list-all after the import: %q", out)
	}
	var g config.Global
	getJSON(t, vm.URL, &g, "global", "get")
	pol := map[string]config.Policy{}
	hist := map[string][]config.PolicyRevision{}
	for _, n := range []string{"fastsnap", "fs", "nfsunlocked", "p", "policy1"} {
		var p config.Policy
		getJSON(t, vm.URL, &p, "policy", "get", n)
		pol[n] = p
		var h []config.PolicyRevision
		getJSON(t, vm.URL, &h, "policy", "history", "list", n)
		hist[n] = h
	}
	vol := map[string]config.Volume{}
	rts := map[string]config.RuntimeOptions{}
	for _, n := range []string{"p/pgdata", "p/redis", "p/sized", "p/web"} {
		var v config.Volume
		getJSON(t, vm.URL, &v, "volume", "get", n)
		vol[n] = v
		var rt config.RuntimeOptions
		getJSON(t, vm.URL, &rt, "volume", "runtime", "get", n)
		rts[n] = rt
	}
	var rev1 config.Policy
	getJSON(t, vm.URL, &rev1, "policy", "history", "get", "p", "1")
	size := func(s string) any {
		n, err := config.ParseSize(s)
		if err != nil {
			return err.Error()
		}
		return n
	}
	archived := func(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
	ceph := config.Backends{CRUD: "ceph", Mount: "ceph", Snapshot: "ceph"}
	ext4 := config.FSCommand{"mkfs.ext4", "-m0", "%"}

	// Field by field: what the import stored (as volcli shows it), and what
	// the original meant by the value it stored.
	rows := []struct {
		field     string
		got, want any
	}{
		{"global TTL (30000000000 ns)", g.TTL, int64(30)},
		{"global Timeout (600000000000 ns)", g.Timeout, int64(10)},
		{"global Debug", g.Debug, true},
		{"global MountPath", g.MountPath, "/mnt/ceph"},

		{"policy fastsnap backends", pol["fastsnap"].Backends, ceph},
		{"policy fastsnap driver.pool", pol["fastsnap"].Driver.Pool, "rbd"},
		{"policy fastsnap create.size (10MB: a 10 MiB image)", size(pol["fastsnap"].Create.Size), mib(10)},
		{"policy fastsnap create.filesystem (\"\": the original's ext4)", pol["fastsnap"].Create.Filesystem, "ext4"},
		{"policy fastsnap filesystems.ext4", fmt.Sprint(pol["fastsnap"].FileSystems["ext4"]), fmt.Sprint(ext4)},
		{"policy fastsnap runtime.snapshots", pol["fastsnap"].Runtime.Snapshots, true},
		{"policy fastsnap runtime.snapshot.frequency", pol["fastsnap"].Runtime.Snapshot.Frequency.D(), 2 * time.Second},
		{"policy fastsnap runtime.snapshot.keep", pol["fastsnap"].Runtime.Snapshot.Keep, uint(10)},
		{"policy fastsnap runtime.rate-limit", pol["fastsnap"].Runtime.RateLimit, config.RateLimit{}},
		{"policy fastsnap unlocked", pol["fastsnap"].Unlocked, false},
		{"policy fastsnap revisions", len(hist["fastsnap"]), 1},
		{"policy fastsnap revision 1 time", hist["fastsnap"][0].Time, archived(1796284817)},

		{"policy fs create.filesystem", pol["fs"].Create.Filesystem, "btrfs"},
		{"policy fs filesystems.btrfs", fmt.Sprint(pol["fs"].FileSystems["btrfs"]), fmt.Sprint(config.FSCommand{"mkfs.btrfs", "%"})},
		{"policy fs filesystems.falsefs", fmt.Sprint(pol["fs"].FileSystems["falsefs"]), fmt.Sprint(config.FSCommand{"/bin/false"})},
		{"policy fs filesystems.ext4", fmt.Sprint(pol["fs"].FileSystems["ext4"]), fmt.Sprint(ext4)},
		{"policy fs runtime.snapshot.frequency", pol["fs"].Runtime.Snapshot.Frequency.D(), 30 * time.Minute},
		{"policy fs runtime.snapshot.keep", pol["fs"].Runtime.Snapshot.Keep, uint(20)},
		{"policy fs revisions", len(hist["fs"]), 1},

		{"policy nfsunlocked backends", pol["nfsunlocked"].Backends, config.Backends{Mount: "nfs"}},
		{"policy nfsunlocked unlocked", pol["nfsunlocked"].Unlocked, true},
		{"policy nfsunlocked create", pol["nfsunlocked"].Create, config.CreateOptions{}},
		{"policy nfsunlocked runtime.snapshots", pol["nfsunlocked"].Runtime.Snapshots, false},
		{"policy nfsunlocked revisions", len(hist["nfsunlocked"]), 1},

		{"policy p backends", pol["p"].Backends, ceph},
		{"policy p create.size", size(pol["p"].Create.Size), mib(10)},
		{"policy p create.filesystem", pol["p"].Create.Filesystem, "ext4"},
		{"policy p runtime.snapshots (frequency \"\")", pol["p"].Runtime.Snapshots, false},
		{"policy p revisions (two archives)", len(hist["p"]), 2},
		{"policy p revision 1 time", hist["p"][0].Time, archived(1796284817)},
		{"policy p revision 2 time", hist["p"][1].Time, archived(1796284818)},
		{"policy p revision 1 create.size", size(rev1.Create.Size), mib(10)},

		{"policy policy1 runtime.snapshot.frequency", pol["policy1"].Runtime.Snapshot.Frequency.D(), 30 * time.Minute},
		{"policy policy1 runtime.snapshot.keep", pol["policy1"].Runtime.Snapshot.Keep, uint(20)},
		{"policy policy1 create.size", size(pol["policy1"].Create.Size), mib(10)},
	}
	for _, n := range []string{"p/pgdata", "p/redis", "p/sized", "p/web"} {
		v := vol[n]
		name := strings.TrimPrefix(n, "p/")
		want := mib(10)
		if n == "p/sized" {
			want = mib(2000) // --opt size=2GB: rbd create --size 2000
		}
		snaps := n == "p/pgdata" // runtime1.json: snapshots every 1m, keep 15
		rows = append(rows, []struct {
			field     string
			got, want any
		}{
			{n + " image (the original's <policy>.<volume>)", v.Image, "p." + name},
			{n + " driver.pool", v.Driver.Pool, "rbd"},
			{n + " backends", v.Backends, ceph},
			{n + " create.size", size(v.Create.Size), want},
			{n + " create.filesystem", v.Create.Filesystem, "ext4"},
			{n + " filesystems.ext4", fmt.Sprint(v.FileSystems["ext4"]), fmt.Sprint(ext4)},
			{n + " formatted (by the original at its creation)", v.Formatted(), true},
			{n + " unlocked", v.Unlocked, false},
			{n + " runtime.snapshots", rts[n].Snapshots, snaps},
			{n + " runtime (volume get = runtime get)", v.Runtime, rts[n]},
		}...)
		if snaps {
			rows = append(rows, []struct {
				field     string
				got, want any
			}{
				{n + " runtime.snapshot.frequency", rts[n].Snapshot.Frequency.D(), time.Minute},
				{n + " runtime.snapshot.keep", rts[n].Snapshot.Keep, uint(15)},
			}...)
		}
	}
	for _, r := range rows {
		if fmt.Sprint(r.got) != fmt.Sprint(r.want) {
			t.Errorf("%-55s got %v, want %v", r.field, r.got, r.want)
		}
	}
	t.Logf("%d fields compared", len(rows))

	// Again: nothing new, nothing written.
	rev = etcdRevision(t, vm.EtcdURL)
	out, e, code = migrate()
	if code != 0 || strings.Contains(out, " created ") || strings.Count(out, " unchanged ") != 10 {
		t.Errorf("second import: exit %d: %s\n%s", code, e, out)
	}
	if got := etcdRevision(t, vm.EtcdURL); got != rev {
		t.Errorf("the second import moved etcd from revision %d to %d", rev, got)
	}

	// A policy of the same name that is not the original's stops the
	// import before anything is written.
	vm2 := startVolmaster(t, t.TempDir())
	if _, e, code := volcli(t, vm2.URL, `{"backend":"local","create":{"size":"1MB"}}`, "policy", "upload", "p"); code != 0 {
		t.Fatal(e)
	}
	rev = etcdRevision(t, vm2.EtcdURL)
	if _, e, code := volcli(t, vm2.URL, "", "migrate", "from-contiv", "--etcd", v2); code != 4 || !strings.Contains(e, "policy p") {
		t.Errorf("import over another policy p: exit %d: %s", code, e)
	}
	if got := etcdRevision(t, vm2.EtcdURL); got != rev {
		t.Errorf("a refused import moved etcd from revision %d to %d", rev, got)
	}
}
