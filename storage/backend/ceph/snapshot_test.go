//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// TestCopyFlatten: a flattened copy no longer needs its origin's snapshot,
// which is unprotected again, so both can go while the copy stays.
func TestCopyFlatten(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	conn := adminConn(t)
	v := testVol(policy, "src", 64*mib, "ext4")
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(m.Path, "f")
	if err := writeSync(file, randBytes(t, 2*mib)); err != nil {
		t.Fatal(err)
	}
	want := sum(t, file)
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSnapshot(ctx, v, "s"); err != nil {
		t.Fatal(err)
	}
	cp := testVol(policy, "copy", 96*mib, "ext4")
	cp.Options = map[string]string{OptFlatten: "yes please"}
	if err := b.CopySnapshot(ctx, v, "s", cp); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("CopySnapshot with a bad flatten option = %v, want ErrInvalid", err)
	}
	cp.Options[OptFlatten] = "true"
	if err := b.CopySnapshot(ctx, v, "s", cp); err != nil {
		t.Fatal(err)
	}
	if got := imageSize(t, conn, policy+":copy"); got != 96*mib {
		t.Fatalf("copy is %d bytes, want it grown to %d", got, 96*mib)
	}
	if err := b.RemoveSnapshot(ctx, v, "s"); err != nil {
		t.Fatalf("RemoveSnapshot after a flattened copy: %v", err)
	}
	if snaps, err := b.ListSnapshots(ctx, v); err != nil || len(snaps) != 0 {
		t.Fatalf("ListSnapshots = %v, %v", snaps, err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatalf("Destroy of the origin of a flattened copy: %v", err)
	}
	cm, err := b.Mount(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(t, filepath.Join(cm.Path, "f")); got != want {
		t.Fatal("the flattened copy lost its data with its origin")
	}
	if err := b.Unmount(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if left := policyImages(t, conn, policy); len(left) > 0 {
		t.Fatalf("images left: %v", left)
	}
	if ids, err := b.List(ctx); err != nil || slices.ContainsFunc(ids, func(id storage.ID) bool { return id.Policy == policy }) {
		t.Fatalf("List = %v, %v", ids, err)
	}
}
