package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

func TestMountRoundTrip(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol1", 64*mib)
	mustCreate(t, b, v)

	m := mustMount(t, b, v)
	if m.Path != b.MountPath(v) || !strings.HasPrefix(m.Device, "/dev/loop") || m.Volume != id(v) {
		t.Fatalf("Mount = %+v", m)
	}
	mounted, err := b.Mounted(ctx)
	if err != nil || len(mounted) != 1 || mounted[0] != m {
		t.Fatalf("Mounted = %+v, %v; want [%+v]", mounted, err, m)
	}
	payload := randBytes(t, 3*mib)
	writeSync(t, filepath.Join(m.Path, "data.bin"), payload)
	mustUnmount(t, b, v)
	assertClean(t, b, v)

	m = mustMount(t, b, v)
	got, err := os.ReadFile(filepath.Join(m.Path, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatal("data read back differs from data written")
	}
	mustUnmount(t, b, v)
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
	p, _ := b.paths(v.Policy, v.Name)
	if _, err := os.Stat(p.image); !os.IsNotExist(err) {
		t.Errorf("image still there: %v", err)
	}
	assertClean(t, b, v)
	if mounted, err := b.Mounted(ctx); err != nil || len(mounted) != 0 {
		t.Errorf("Mounted = %+v, %v", mounted, err)
	}
}

func TestMountIdempotent(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	m1 := mustMount(t, b, v)
	m2 := mustMount(t, b, v)
	if m1 != m2 {
		t.Fatalf("second Mount = %+v, first %+v", m2, m1)
	}
	p, _ := b.paths(v.Policy, v.Name)
	if devs := loopsBacking(t, p.image); len(devs) != 1 {
		t.Fatalf("loop devices = %v, want one", devs)
	}
	if ms := mountsUnder(t, b.mountRoot); len(ms) != 1 {
		t.Fatalf("mounts = %v, want one", ms)
	}
	mustUnmount(t, b, v)
	mustUnmount(t, b, v)
	assertClean(t, b, v)
	if err := b.Unmount(ctx, ext4Vol("never-created", mib)); err != nil {
		t.Errorf("Unmount(absent) = %v", err)
	}
	if _, err := b.Mount(ctx, ext4Vol("never-created", mib)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Mount(absent) = %v, want ErrNotFound", err)
	}
}

func TestMountConcurrent(t *testing.T) {
	needRoot(t)
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	const n = 4
	var wg sync.WaitGroup
	ms := make([]storage.Mount, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { ms[i], errs[i] = b.Mount(context.Background(), v) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ms[i] != ms[0] {
			t.Errorf("Mount %d = %+v, %v; want %+v", i, ms[i], errs[i], ms[0])
		}
	}
	p, _ := b.paths(v.Policy, v.Name)
	if devs := loopsBacking(t, p.image); len(devs) != 1 {
		t.Errorf("loop devices = %v, want one", devs)
	}
	for range n {
		wg.Go(func() {
			if err := b.Unmount(context.Background(), v); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	assertClean(t, b, v)
}

func TestMountWrongFilesystem(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	// Format the image directly as something else than the volume asks for.
	v := ext4Vol("vol", 320*mib)
	format, other := []string{"mkfs.xfs", "-q"}, "xfs"
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		t.Logf("no mkfs.xfs, formatting ext4 and asking for xfs instead: %v", err)
		format, other = []string{"mkfs.ext4", "-q"}, "ext4"
		v.Filesystem, v.Mkfs = "xfs", []string{"mkfs.xfs", "%"}
	}
	mustCreate(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	if _, err := sysexec.Run(ctx, b.timeout, append(format, p.image)...); err != nil {
		t.Fatal(err)
	}
	_, err := b.Mount(ctx, v)
	if !errors.Is(err, storage.ErrWrongFilesystem) || strings.Contains(err.Error(), "rollback") {
		t.Fatalf("Mount = %v, want ErrWrongFilesystem and a clean rollback", err)
	}
	assertClean(t, b, v)
	c, err := fsutil.Probe(ctx, b.timeout, p.image)
	if err != nil || c.FSType != other {
		t.Fatalf("image now holds %v (%v), want %s untouched", c, err, other)
	}
	// Asking for what is there mounts it.
	v.Filesystem = other
	mustMount(t, b, v)
	mustUnmount(t, b, v)
	assertClean(t, b, v)
}

func TestMountMkfsFails(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	v.Mkfs = []string{"false"}
	mustCreate(t, b, v)
	_, err := b.Mount(ctx, v)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || strings.Contains(err.Error(), "rollback") {
		t.Fatalf("Mount = %v, want mkfs failure and a clean rollback", err)
	}
	assertClean(t, b, v)

	v.Mkfs = nil
	if _, err := b.Mount(ctx, v); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Mount without mkfs = %v, want ErrInvalid", err)
	}
	assertClean(t, b, v)
}

func TestMountRollbackAfterFormat(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	// A file where the mount point should be makes the last step fail.
	mp := b.MountPath(v)
	if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := b.Mount(ctx, v)
	if err == nil || strings.Contains(err.Error(), "rollback") {
		t.Fatalf("Mount = %v, want an error and a clean rollback", err)
	}
	p, _ := b.paths(v.Policy, v.Name)
	if devs := loopsBacking(t, p.image); len(devs) > 0 {
		t.Errorf("loop devices left: %v", devs)
	}
	if ms := mountsUnder(t, b.mountRoot); len(ms) > 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if err := os.Remove(mp); err != nil {
		t.Fatal(err)
	}
	// The format done before the failure stands; the next Mount uses it.
	mustMount(t, b, v)
	mustUnmount(t, b, v)
	assertClean(t, b, v)
}

func TestMountReusesAttachedLoop(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	// As if a crash left the image attached.
	dev, err := b.attach(ctx, p.image)
	if err != nil {
		t.Fatal(err)
	}
	m := mustMount(t, b, v)
	if m.Device != dev {
		t.Errorf("Mount used %s, want the existing %s", m.Device, dev)
	}
	mustUnmount(t, b, v)
	assertClean(t, b, v)
}

func TestSparseCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	a, z := randBytes(t, 4096), randBytes(t, 8192)
	if _, err := f.WriteAt(a, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(z, 10*mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 * mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := sparseCopy(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, want) {
		t.Fatal("copy differs")
	}
	if used := allocated(t, dst); used > 1*mib {
		t.Errorf("copy allocates %d bytes of 32 MiB; not sparse", used)
	}
	if err := sparseCopy(ctx, src, dst); !errors.Is(err, storage.ErrExists) {
		t.Errorf("copy onto existing = %v, want ErrExists", err)
	}
}
