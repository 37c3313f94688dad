package systemtests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// run runs argv with a timeout and fails the test on error.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := sysexec.Run(ctx, 0, argv...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}

// originalTree is a dump of the original's etcd v2 tree holding policy p
// (as in the original's testdata) and one Ceph volume p/<name>, as the
// original wrote them.
func originalTree(name string) string {
	policy := `{"name":"p","create":{"size":"64MB","filesystem":"ext4"},"runtime":{"snapshots":false,"snapshot":{"frequency":"","keep":0},"rate-limit":{"write-bps":0,"read-bps":0}},"driver":{"pool":"rbd"},"filesystems":{"ext4":"mkfs.ext4 -m0 %"},"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"}}`
	vol := `{"policy":"p","name":"` + name + `","driver":{"pool":"rbd"},"mount":"","create":{"size":"64MB","filesystem":"ext4"},"runtime":{"snapshots":false,"snapshot":{"frequency":"","keep":0},"rate-limit":{"write-bps":0,"read-bps":0}},"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"}}`
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return `{"action":"get","node":{"key":"/volplugin","dir":true,"nodes":[
	 {"key":"/volplugin/policies","dir":true,"nodes":[{"key":"/volplugin/policies/p","value":` + q(policy) + `}]},
	 {"key":"/volplugin/volumes","dir":true,"nodes":[{"key":"/volplugin/volumes/p","dir":true,"nodes":[
	  {"key":"/volplugin/volumes/p/` + name + `","dir":true,"nodes":[
	   {"key":"/volplugin/volumes/p/` + name + `/create","value":` + q(vol) + `},
	   {"key":"/volplugin/volumes/p/` + name + `/runtime","value":` + q(`{"snapshots":false,"snapshot":{"frequency":"","keep":0},"rate-limit":{"write-bps":0,"read-bps":0}}`) + `}]}]}]}]}}`
}

// A Ceph image the original made and formatted (rbd create, then mkfs.ext4
// -m0 as its policy says, a file written) and snapshotted (rbd snap create,
// named by its time.String()) is imported from a dump of the original's
// tree; then a real dockerd, with volplugin serving as volcontiv (the
// original's plugin name), runs a container on it that reads the file. No
// mkfs ran: the filesystem's UUID is the same before and after. The RBD
// snapshot is listed as the volume's, and docker volume create -o takes the
// original's option spellings.
func TestMigrateCephImageAdopted(t *testing.T) {
	conf := cephConf(t)
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, rbd-fuse, loop devices and mounts")
	}
	// A name of its own per run: the cluster is shared, and may hold an
	// earlier run's image.
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	name := "pgdata-" + hex.EncodeToString(rnd[:])
	image := "p." + name
	ctx := context.Background()

	// The original's way: rbd create --size <MB>, then its mkfs.
	run(t, "rbd", "-c", conf, "create", "--size", "64", "rbd/"+image)
	t.Cleanup(func() {
		// Gone already when the volume's remove below worked.
		_, _ = sysexec.Run(context.Background(), time.Minute, "rbd", "-c", conf, "snap", "purge", "rbd/"+image)
		_, _ = sysexec.Run(context.Background(), time.Minute, "rbd", "-c", conf, "rm", "rbd/"+image)
	})
	mp, err := mapper.New(ctx, mapper.Fuse, mapper.Env{RunDir: t.TempDir(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	img := mapper.Image{Pool: "rbd", Name: image, Conf: conf}
	uuid := func() string {
		t.Helper()
		dev, err := mp.Map(ctx, img)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := mp.Unmap(ctx, img); err != nil {
				t.Error(err)
			}
		}()
		return strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", dev))
	}
	dev, err := mp.Map(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mp.Unmap(context.Background(), img) })
	run(t, "mkfs.ext4", "-q", "-m0", dev)
	mnt := t.TempDir()
	run(t, "mount", dev, mnt)
	werr := os.WriteFile(filepath.Join(mnt, "hello"), []byte("written under the original\n"), 0o644)
	run(t, "umount", mnt)
	if werr != nil {
		t.Fatal(werr)
	}
	if err := mp.Unmap(ctx, img); err != nil {
		t.Fatal(err)
	}
	before := uuid()
	// Its volsupervisor's way: a snapshot named by time.Now().String().
	taken := time.Now().Round(0)
	snapName := taken.String()
	run(t, "rbd", "-c", conf, "snap", "create", "rbd/"+image+"@"+snapName)

	data := t.TempDir()
	vm := startVolmaster(t, data, "--ceph-conf", conf)
	dump := filepath.Join(t.TempDir(), "dump.json")
	if err := os.WriteFile(dump, []byte(originalTree(name)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, e, code := volcli(t, vm.URL, "", "migrate", "from-contiv", "--file", dump)
	if code != 0 {
		t.Fatalf("import: exit %d: %s\n%s", code, e, out)
	}
	t.Logf("volcli migrate from-contiv:\n%s", out)
	ref := "p/" + name
	t.Cleanup(func() { _, _ = removeForGood(t, vm.URL, ref) })
	if !strings.Contains(out, "image rbd/"+image+" adopted as formatted") || !strings.Contains(out, fmt.Sprintf("snapshot %q as %s", snapName, config.SnapshotName(taken))) {
		t.Errorf("import output:\n%s", out)
	}
	var rec config.Volume
	getJSON(t, vm.URL, &rec, "volume", "get", ref)
	if rec.Image != image || !rec.Formatted() || rec.Create.Size != "64MB" {
		t.Errorf("imported record: image %q, formatted %v, size %s", rec.Image, rec.Formatted(), rec.Create.Size)
	}
	if imgs := rbdImages(t, conf); strings.Contains(imgs, "p:"+name) {
		t.Fatalf("the import made an image of its own: %q", imgs)
	}

	sockDir, mntRoot := filepath.Join(data, "plugins"), filepath.Join(data, "mnt")
	for _, d := range []string{sockDir, mntRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	startVolplugin(t, vm, data, "volcontiv", "hostA", "--socket-dir", sockDir, "--mount-root", mntRoot,
		"--ceph-conf", conf, "--ceph-mapper", "fuse", "--ceph-run-dir", filepath.Join(data, "run"))
	d := dockertest.Start(t, "vp-contiv", dockertest.WithPluginsDir(sockDir), dockertest.WithSharedMount(mntRoot))
	cimg := d.Image(t)
	if got := docker(t, d, "run", "--rm", "-v", ref+":/data", cimg, "cat", "/data/hello"); got != "written under the original\n" {
		t.Fatalf("the container read %q", got)
	}
	if after := uuid(); after != before || before == "" {
		t.Errorf("filesystem UUID %q before the import, %q after the container ran: formatted again", before, after)
	}

	// The RBD snapshot is the volume's, under a name of ours from its time.
	snaps, e, code := volcli(t, vm.URL, "", "volume", "snapshot", "list", ref)
	if code != 0 || !strings.Contains(snaps, config.SnapshotName(taken)) || !strings.Contains(snaps, fmt.Sprintf("(backend name %q)", snapName)) {
		t.Errorf("snapshot list: exit %d: %s\n%s", code, e, snaps)
	}

	// The adopted snapshot is used by its RBD name: a copy is made from it,
	// and a prune (keep 1 after an on-demand snapshot) removes it.
	ourName := config.SnapshotName(taken)
	cp := "p/copy-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { _, _ = removeForGood(t, vm.URL, cp) })
	if _, e, code := volcli(t, vm.URL, "", "volume", "snapshot", "copy", ref, ourName, strings.TrimPrefix(cp, "p/")); code != 0 {
		t.Errorf("copy of the adopted snapshot: exit %d: %s", code, e)
	} else if e, code := removeForGood(t, vm.URL, cp); code != 0 {
		t.Errorf("remove the copy: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, `{"snapshots": false, "snapshot": {"keep": 1}}`, "volume", "runtime", "upload", ref); code != 0 {
		t.Fatalf("runtime upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "snapshot", "take", ref); code != 0 {
		t.Fatalf("snapshot take: %s", e)
	}
	if snaps := run(t, "rbd", "-c", conf, "snap", "ls", "rbd/"+image); strings.Contains(snaps, snapName) {
		t.Errorf("the adopted snapshot was not pruned (keep 1):\n%s", snaps)
	}
	if list, _, _ := volcli(t, vm.URL, "", "volume", "snapshot", "list", ref); strings.Contains(list, ourName) || strings.Count(list, "\n") != 1 {
		t.Errorf("snapshot list after the prune:\n%s", list)
	}

	// The original's option spellings, through docker volume create -o.
	other := "p/opts-" + hex.EncodeToString(rnd[:])
	docker(t, d, "volume", "create", "-d", "volcontiv", other, "-o", "size=32MB", "-o", "snapshots=true",
		"-o", "snapshots.frequency=1h", "-o", "snapshots.keep=3", "-o", "rate-limit.write.bps=1000000", "-o", "rate-limit.read.iops=500")
	t.Cleanup(func() { _, _ = removeForGood(t, vm.URL, other) })
	var v config.Volume
	getJSON(t, vm.URL, &v, "volume", "get", other)
	want := config.RuntimeOptions{Snapshots: true, Snapshot: config.SnapshotConfig{Frequency: config.Duration(time.Hour), Keep: 3},
		RateLimit: config.RateLimit{WriteBPS: 1000000, ReadIOPS: 500}}
	if v.Runtime != want || v.Create.Size != "32MB" || v.Image != "" {
		t.Errorf("volume made with the original's spellings: runtime %+v size %s image %q", v.Runtime, v.Create.Size, v.Image)
	}
	docker(t, d, "volume", "rm", other)
	purgeTrash(t, vm.URL, other)

	// The adopted volume is removed like any other (into the trash, then
	// purged), image and snapshot included.
	docker(t, d, "volume", "rm", ref)
	purgeTrash(t, vm.URL, ref)
	if imgs := rbdImages(t, conf); strings.Contains(imgs, image) {
		t.Errorf("image %s still listed after docker volume rm: %q", image, imgs)
	}
}
