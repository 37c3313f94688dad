package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/volplugin/volplugin/storage"
)

func TestSnapshots(t *testing.T) {
	needRoot(t, "fsfreeze")
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	if _, err := b.CreateSnapshot(ctx, ext4Vol("absent", mib), "s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateSnapshot(absent image) = %v, want ErrNotFound", err)
	}
	if _, err := b.ListSnapshots(ctx, ext4Vol("absent", mib)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListSnapshots(absent image) = %v, want ErrNotFound", err)
	}
	if snaps, err := b.ListSnapshots(ctx, v); err != nil || len(snaps) != 0 {
		t.Errorf("ListSnapshots before any = %v, %v", snaps, err)
	}

	m := mustMount(t, b, v)
	file := filepath.Join(m.Path, "data")
	a, bb := randBytes(t, mib), randBytes(t, mib)
	writeSync(t, file, a)
	// Taken while mounted: the filesystem is frozen for the copy.
	if _, err := b.CreateSnapshot(ctx, v, "s1"); err != nil {
		t.Fatal(err)
	}
	writeSync(t, file, bb)
	if _, err := b.CreateSnapshot(ctx, v, "s1"); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateSnapshot twice = %v, want ErrExists", err)
	}

	p, _ := b.paths(v.Policy, v.Name)
	sp, _ := b.snapPath(p, "s1")
	if size, used := fileSize(t, sp), allocated(t, sp); size != 64*mib || used > size/4 {
		t.Errorf("snapshot size %d, allocated %d: want 64 MiB, sparse", size, used)
	}

	cp := ext4Vol("copy", 64*mib)
	if err := b.CopySnapshot(ctx, v, "s1", cp); err != nil {
		t.Fatal(err)
	}
	if err := b.CopySnapshot(ctx, v, "s1", cp); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CopySnapshot onto existing = %v, want ErrExists", err)
	}
	if err := b.CopySnapshot(ctx, v, "nope", ext4Vol("copy2", mib)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CopySnapshot(absent snapshot) = %v, want ErrNotFound", err)
	}
	// Mounted alongside its origin, which shares its UUID.
	cm := mustMount(t, b, cp)
	got, err := os.ReadFile(filepath.Join(cm.Path, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, a) {
		t.Error("copy of s1 does not hold the data written before the snapshot")
	}
	mustUnmount(t, b, cp)

	// A snapshot from before a resize, copied at the volume's grown size:
	// the image has that size and the first mount grows the filesystem.
	big := ext4Vol("bigcopy", 96*mib)
	big.Grow = true
	if err := b.CopySnapshot(ctx, v, "s1", big); err != nil {
		t.Fatal(err)
	}
	bp, _ := b.paths(big.Policy, big.Name)
	if size := fileSize(t, bp.image); size != 96*mib {
		t.Errorf("copy at the grown size: image of %d bytes, want %d", size, 96*mib)
	}
	bm := mustMount(t, b, big)
	var st syscall.Statfs_t
	if err := syscall.Statfs(bm.Path, &st); err != nil || int64(st.Blocks)*st.Bsize < 80*mib {
		t.Errorf("copy's filesystem after its first mount: %d bytes (%v), want about 96 MiB", int64(st.Blocks)*st.Bsize, err)
	}
	if got, err := os.ReadFile(filepath.Join(bm.Path, "data")); err != nil || !slices.Equal(got, a) {
		t.Errorf("grown copy lost the data: %v", err)
	}
	mustUnmount(t, b, big)
	mustUnmount(t, b, v)

	for _, s := range []string{"s2", "a-b", "a"} {
		if _, err := b.CreateSnapshot(ctx, v, s); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := b.ListSnapshots(ctx, v)
	if want := []string{"a", "a-b", "s1", "s2"}; err != nil || !slices.Equal(snaps, want) {
		t.Errorf("ListSnapshots = %v, %v; want %v", snaps, err, want)
	}
	if err := b.RemoveSnapshot(ctx, v, "s2"); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveSnapshot(ctx, v, "s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RemoveSnapshot twice = %v, want ErrNotFound", err)
	}
	if snaps, _ := b.ListSnapshots(ctx, v); !slices.Equal(snaps, []string{"a", "a-b", "s1"}) {
		t.Errorf("after remove: %v", snaps)
	}

	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.snapDir); !os.IsNotExist(err) {
		t.Errorf("snapshot dir left after Destroy: %v", err)
	}
	if err := b.Destroy(ctx, cp); err != nil {
		t.Fatal(err)
	}
	assertClean(t, b, v)
	assertClean(t, b, cp)
}
