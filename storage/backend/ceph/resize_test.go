//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"testing"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/storage"
)

// TestResizeOnline grows a mounted volume: the image, the mapping and the
// filesystem. It uses xfs: online ext4 growth needs CAP_SYS_RESOURCE, which
// the CI sandbox lacks (resize2fs: Permission denied).
func TestResizeOnline(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	conn := adminConn(t)
	// mkfs.xfs wants at least 300 MiB.
	v := testVol(policy, "grow", 320*mib, "xfs")
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	before := fsSize(t, m.Path)
	if err := b.Resize(ctx, v, 512*mib); err != nil {
		t.Fatal(err)
	}
	after := fsSize(t, m.Path)
	// xfs keeps its log out of statfs: compare the growth, 192 MiB.
	if after-before < 190*mib {
		t.Fatalf("filesystem %d bytes before, %d after growing the image by 192 MiB", before, after)
	}
	if got := imageSize(t, conn, policy+":grow"); got != 512*mib {
		t.Fatalf("image is %d bytes, want %d", got, 512*mib)
	}
	if err := b.Resize(ctx, v, 512*mib); err != nil {
		t.Fatalf("Resize to the current size: %v", err)
	}
	if err := b.Resize(ctx, v, 256*mib); !errors.Is(err, storage.ErrUnsupported) {
		t.Fatalf("shrink = %v, want ErrUnsupported", err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	// Unmounted, only the image grows.
	if err := b.Resize(ctx, v, 600*mib); err != nil {
		t.Fatal(err)
	}
	if got := imageSize(t, conn, policy+":grow"); got != 600*mib {
		t.Fatalf("image is %d bytes, want %d", got, 600*mib)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
}

func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

// imageSize is the size of image in pool rbd, straight from Ceph.
func imageSize(t *testing.T, conn *rados.Conn, image string) int64 {
	t.Helper()
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	img, err := rbd.OpenImageReadOnly(io, image, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	size, err := img.GetSize()
	if err != nil {
		t.Fatal(err)
	}
	return int64(size)
}
