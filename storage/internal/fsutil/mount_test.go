package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/loopdev"
)

// Mount and UnmountAll are system calls: the options land as mount(8)
// would set them, a busy mount is ErrInUse and stays, and nothing is left
// mounted or attached.
func TestMountAndUnmountAll(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	ctx := context.Background()
	img := sparseImage(t, 64*mib)
	v := storage.Volume{Policy: "p", Name: "v", Size: 64 * mib, Filesystem: "ext4", Mkfs: []string{"mkfs.ext4", "-q", "-F", "%"}}
	if _, err := FormatIfBlank(ctx, time.Minute, v, img, Repair{}); err != nil {
		t.Fatal(err)
	}
	dev, err := loopdev.Attach(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = loopdev.Detach(dev) })
	mnt := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(context.Background(), time.Minute, mnt) })
	if err := Mount(ctx, time.Minute, "ext4", dev, mnt, true); err != nil {
		t.Fatal(err)
	}
	m, err := MountAt(mnt)
	if err != nil || m == nil || m.Source != dev {
		t.Fatalf("MountAt after Mount = %+v, %v; want %s", m, err, dev)
	}
	for _, o := range []string{"nosuid", "nodev", "noexec"} {
		if !strings.Contains(","+m.Options+",", ","+o+",") {
			t.Errorf("mount options %q lack %s", m.Options, o)
		}
	}
	f, err := os.Create(filepath.Join(mnt, "open"))
	if err != nil {
		t.Fatal(err)
	}
	if err := UnmountAll(ctx, time.Minute, mnt); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("UnmountAll with a file open = %v, want ErrInUse", err)
	}
	if m, _ := MountAt(mnt); m == nil {
		t.Fatal("a busy mount went away")
	}
	f.Close()
	if err := UnmountAll(ctx, time.Minute, mnt); err != nil {
		t.Fatal(err)
	}
	if m, err := MountAt(mnt); err != nil || m != nil {
		t.Fatalf("MountAt after UnmountAll = %+v, %v", m, err)
	}
	if err := UnmountAll(ctx, time.Minute, mnt); err != nil {
		t.Errorf("UnmountAll of nothing = %v", err)
	}
	if err := Mount(ctx, time.Minute, "xfs", dev, mnt, false); err == nil {
		t.Error("mounting ext4 as xfs succeeded")
	}
}

// A call that never returns (a fake standing for a mount stuck in the
// kernel on a dead device) costs its caller the timeout, not a hang.
func TestBoundedGivesUpOnAHungCall(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	err := bounded(context.Background(), 50*time.Millisecond, "mount x", func() error { <-stuck; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "mount x") {
		t.Fatalf("bounded(hung) = %v, want DeadlineExceeded naming the call", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	if err := bounded(ctx, time.Minute, "mount y", func() error { called = true; return nil }); !errors.Is(err, context.Canceled) || called {
		t.Fatalf("bounded(cancelled) = %v, called %v", err, called)
	}
}
