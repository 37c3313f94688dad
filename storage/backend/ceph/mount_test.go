//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// TestLifecycleFuse runs a volume through its life on the real cluster with
// the fuse mapper: create, map, mkfs, mount, write 32 MiB, unmount, unmap,
// map again and read the data back, snapshot, write more, copy the snapshot
// and check the copy holds the snapshot's data, then destroy both.
func TestLifecycleFuse(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	conn := adminConn(t)
	v := testVol(policy, "db.1", 256*mib, "ext4")
	image := policy + ":db.1"

	if name, err := b.MapperName(ctx); err != nil || name != "fuse" {
		t.Fatalf("MapperName = %q, %v", name, err)
	}
	if _, err := b.Mount(ctx, v); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Mount before Create = %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != b.MountPath(v) || !strings.HasPrefix(m.Device, "/dev/loop") || m.Volume != id(v) {
		t.Fatalf("Mount = %+v", m)
	}
	if again, err := b.Mount(ctx, v); err != nil || again != m {
		t.Fatalf("second Mount = %+v, %v; want %+v", again, err, m)
	}
	if ms, err := b.Mounted(ctx); err != nil || len(ms) != 1 || ms[0] != m {
		t.Fatalf("Mounted = %+v, %v", ms, err)
	}
	if ws := watchers(t, conn, image); len(ws) != 1 {
		t.Fatalf("watchers while mapped = %+v, want the one rbd-fuse", ws)
	}
	data := randBytes(t, 32*mib)
	file := filepath.Join(m.Path, "data.bin")
	if err := writeSync(file, data); err != nil {
		t.Fatal(err)
	}
	want := sum(t, file)
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Destroy while mounted = %v, want ErrInUse", err)
	}

	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertUnmapped(t, b, image)
	if ws := watchers(t, conn, image); len(ws) != 0 {
		t.Fatalf("watchers after Unmount = %+v", ws)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}

	// Mapped again, the filesystem is mounted as it is: mkfs would fail.
	v.Mkfs = []string{"false"}
	m, err = b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(t, file); got != want {
		t.Fatal("data read back after remapping differs from data written")
	}

	// Mounted here: a native snapshot with the filesystem frozen for it.
	if info, err := b.CreateSnapshot(ctx, v, "s1"); err != nil || info.Method != storage.SnapshotNative || info.Frozen <= 0 {
		t.Fatalf("snapshot of a mounted image = %+v, %v; want native, frozen", info, err)
	}
	if _, err := b.CreateSnapshot(ctx, v, "s1"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second CreateSnapshot = %v, want ErrExists", err)
	}
	if snaps, err := b.ListSnapshots(ctx, v); err != nil || !slices.Equal(snaps, []string{"s1"}) {
		t.Fatalf("ListSnapshots = %v, %v", snaps, err)
	}
	if err := b.RemoveSnapshot(ctx, v, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RemoveSnapshot(absent) = %v, want ErrNotFound", err)
	}
	later := randBytes(t, 8*mib)
	if err := writeSync(file, later); err != nil {
		t.Fatal(err)
	}
	if err := writeSync(filepath.Join(m.Path, "later.bin"), later); err != nil {
		t.Fatal(err)
	}

	cp := testVol(policy, "db.1-copy", 256*mib, "ext4")
	cp.Mkfs = []string{"false"}
	if err := b.CopySnapshot(ctx, v, "nope", cp); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CopySnapshot(absent snapshot) = %v, want ErrNotFound", err)
	}
	if err := b.CopySnapshot(ctx, v, "s1", cp); err != nil {
		t.Fatal(err)
	}
	if err := b.CopySnapshot(ctx, v, "s1", cp); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second CopySnapshot = %v, want ErrExists", err)
	}
	cm, err := b.Mount(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(t, filepath.Join(cm.Path, "data.bin")); got != want {
		t.Fatal("the copy does not hold the snapshot's data")
	}
	if _, err := os.Stat(filepath.Join(cm.Path, "later.bin")); !os.IsNotExist(err) {
		t.Fatalf("the copy holds a file written after the snapshot: %v", err)
	}
	if got := sum(t, file); got == want {
		t.Fatal("the origin lost the writes made after the snapshot")
	}

	for _, x := range []storage.Volume{cp, v} {
		if err := b.Unmount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	// The origin's snapshot has a clone: neither goes while the copy exists.
	if err := b.RemoveSnapshot(ctx, v, "s1"); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("RemoveSnapshot with a clone = %v, want ErrInUse", err)
	}
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Destroy of a clone's parent = %v, want ErrInUse", err)
	}
	for _, x := range []storage.Volume{cp, v} {
		if err := b.Destroy(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if left := policyImages(t, conn, policy); len(left) > 0 {
		t.Fatalf("images left in pool rbd: %v", left)
	}
	assertUnmapped(t, b, image)
}

// assertUnmapped checks that nothing of image is left on this host: no
// mount, loop device, FUSE mount or rbd-fuse.
func assertUnmapped(t *testing.T, b *Backend, image string) {
	t.Helper()
	id, _ := ParseImageName(image)
	if ms, _ := fsutil.MountsUnder(b.cfg.MountRoot); len(ms) > 0 {
		t.Errorf("still mounted: %+v", ms)
	}
	if _, err := os.Stat(b.MountPath(storage.Volume{Policy: id.Policy, Name: id.Name})); !os.IsNotExist(err) {
		t.Errorf("mount point left: %v", err)
	}
	dir := filepath.Join(b.cfg.RunDir, "fuse", "rbd", image)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("FUSE dir %s left: %v", dir, err)
	}
	if pid := rbdFusePID(dir + ".pid"); pid != 0 {
		t.Errorf("rbd-fuse %d still runs", pid)
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if backing, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(backing), dir+"/") {
			t.Errorf("loop device %s still backed by %s", f, backing)
		}
	}
}

// TestFormatSafety: a device with a filesystem other than the volume's is
// refused, never reformatted, and the mapping is rolled back.
func TestFormatSafety(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	v := testVol(policy, "v", 64*mib, "ext4")
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	noMkfs := v
	noMkfs.Mkfs = nil
	if _, err := b.Mount(ctx, noMkfs); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Mount of a blank image without mkfs = %v, want ErrInvalid", err)
	}
	assertUnmapped(t, b, policy+":v")
	if _, err := b.Mount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	asXFS := v
	asXFS.Filesystem, asXFS.Mkfs = "xfs", []string{"mkfs.xfs", "-f", "%"}
	if _, err := b.Mount(ctx, asXFS); !errors.Is(err, storage.ErrWrongFilesystem) {
		t.Fatalf("Mount as xfs of an ext4 image = %v, want ErrWrongFilesystem", err)
	}
	assertUnmapped(t, b, policy+":v")
	// Still ext4, still mountable.
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if mi, err := fsutil.MountAt(m.Path); err != nil || mi == nil || mi.FSType != "ext4" {
		t.Fatalf("mounted %+v, %v", mi, err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
}
