package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/storage"
)

// devSize is a block device's size as the kernel sees it.
func devSize(t *testing.T, dev string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return sectors * 512
}

func TestResizeExt4(t *testing.T) {
	needRoot(t, "resize2fs", "e2fsck")
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	m := mustMount(t, b, v)
	payload := randBytes(t, mib)
	writeSync(t, filepath.Join(m.Path, "data"), payload)
	before := fsSize(t, m.Path)

	if err := b.Resize(ctx, v, 32*mib); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("shrink = %v, want ErrUnsupported", err)
	}
	// Online ext4 growth needs privileges some sandboxes withhold; the
	// image and loop device grow regardless.
	online := b.Resize(ctx, v, 128*mib)
	if online != nil {
		if !strings.Contains(online.Error(), "Permission denied") {
			t.Fatalf("online grow: %v", online)
		}
		t.Logf("online ext4 grow refused here, testing offline grow: %v", online)
	} else if got := fsSize(t, m.Path); got <= before {
		t.Errorf("fs size %d after online grow, was %d", got, before)
	}
	if got := fileSize(t, p.image); got != 128*mib {
		t.Errorf("image size %d, want 128 MiB", got)
	}
	if got := devSize(t, m.Device); got != 128*mib {
		t.Errorf("loop device size %d, want 128 MiB", got)
	}
	mustUnmount(t, b, v)

	// Offline: the same size again grows a filesystem an earlier call
	// could not.
	if err := b.Resize(ctx, v, 128*mib); err != nil {
		t.Fatal(err)
	}
	if err := b.Resize(ctx, v, 160*mib); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, p.image); got != 160*mib {
		t.Errorf("image size %d, want 160 MiB", got)
	}
	m = mustMount(t, b, v)
	if got := fsSize(t, m.Path); got < 140*mib {
		t.Errorf("fs size %d after offline grow to 160 MiB", got)
	}
	if got, err := os.ReadFile(filepath.Join(m.Path, "data")); err != nil || !slices.Equal(got, payload) {
		t.Errorf("data lost in resize: %v", err)
	}
	mustUnmount(t, b, v)
	assertClean(t, b, v)
	if err := b.Resize(ctx, ext4Vol("absent", mib), 2*mib); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Resize(absent) = %v, want ErrNotFound", err)
	}
}

func TestResizeXFSOnline(t *testing.T) {
	needRoot(t, "mkfs.xfs", "xfs_growfs")
	ctx := context.Background()
	b := newBackend(t)
	v := storage.Volume{Policy: "pol", Name: "x", Size: 320 * mib, Filesystem: "xfs", Mkfs: []string{"mkfs.xfs", "-q", "%"}}
	mustCreate(t, b, v)
	m := mustMount(t, b, v)
	before := fsSize(t, m.Path)
	if err := b.Resize(ctx, v, 400*mib); err != nil {
		t.Fatal(err)
	}
	if got := fsSize(t, m.Path); got <= before {
		t.Errorf("fs size %d after grow, was %d", got, before)
	}
	mustUnmount(t, b, v)
	assertClean(t, b, v)
}
