//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/storage"
)

// trashOf lists the rbd trash entries of policy's images in pool rbd.
func trashOf(t *testing.T, policy string) []rbd.TrashInfo {
	t.Helper()
	io, err := adminConn(t).OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	all, err := rbd.GetTrashList(io)
	if err != nil {
		t.Fatal(err)
	}
	var out []rbd.TrashInfo
	for _, e := range all {
		if strings.HasPrefix(e.Name, policy+":") {
			out = append(out, e)
		}
	}
	return out
}

// purgeTrashOnCleanup removes whatever rbd trash entries of policy a
// failed test left, so that the shared pool does not fill up.
func purgeTrashOnCleanup(t *testing.T, b *Backend, policy string) {
	t.Cleanup(func() {
		for _, e := range trashOf(t, policy) {
			id, _ := ParseImageName(e.Name)
			if err := b.Purge(context.Background(), storage.Volume{Policy: id.Policy, Name: id.Name, Pool: "rbd"}, e.Id); err != nil {
				t.Errorf("cleanup: purge %s (%s): %v", e.Name, e.Id, err)
			}
		}
	})
}

// An image with data and a snapshot goes to the rbd trash with a
// deferment, freeing its name; a restore over a new image of that name is
// refused; after that one is gone it comes back with data and snapshot;
// purge removes a trashed image with snapshots before its deferment ends.
func TestTrashRestorePurge(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	purgeTrashOnCleanup(t, b, policy)
	v := testVol(policy, "db", 64*mib, "ext4")
	if _, err := b.Trash(ctx, v, time.Hour); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Trash(absent) = %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(m.Path, "data.bin")
	if err := writeSync(file, randBytes(t, 4*mib)); err != nil {
		t.Fatal(err)
	}
	want := sum(t, file)
	if _, err := b.Trash(ctx, v, time.Hour); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Trash(mounted) = %v, want ErrInUse", err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSnapshot(ctx, v, "s1"); err != nil {
		t.Fatal(err)
	}
	// A copy protects the snapshot; flattened, it leaves no clone behind.
	cp := testVol(policy, "copy", 64*mib, "ext4")
	cp.Options = map[string]string{"flatten": "true"}
	if err := b.CopySnapshot(ctx, v, "s1", cp); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, cp); err != nil {
		t.Fatal(err)
	}
	h1, err := b.Trash(ctx, v, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Exists(ctx, v); ok {
		t.Fatal("image still under its name after Trash")
	}
	tr := trashOf(t, policy)
	if len(tr) != 1 || tr[0].Id != h1 || tr[0].Name != policy+":db" || !tr[0].DefermentEndTime.After(time.Now().Add(50*time.Minute)) {
		t.Fatalf("rbd trash = %+v, want %s with an hour's deferment", tr, h1)
	}

	if err := b.Create(ctx, v); err != nil {
		t.Fatalf("Create under the trashed image's name: %v", err)
	}
	if err := b.Restore(ctx, v, h1); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Restore over a new image = %v, want ErrExists", err)
	}
	h2, err := b.Trash(ctx, v, time.Hour)
	if err != nil || h2 == h1 {
		t.Fatalf("second Trash = %q, %v", h2, err)
	}
	if err := b.Restore(ctx, v, h1); err != nil {
		t.Fatal(err)
	}
	m, err = b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(t, filepath.Join(m.Path, "data.bin")); got != want {
		t.Error("restored data differs")
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if snaps, err := b.ListSnapshots(ctx, v); err != nil || len(snaps) != 1 || snaps[0] != "s1" {
		t.Errorf("restored snapshots %v, %v", snaps, err)
	}

	// Purge before the deferment ends; the restored one goes to the trash
	// again with its snapshot and is purged too.
	if err := b.Purge(ctx, v, h2); err != nil {
		t.Fatal(err)
	}
	if err := b.Purge(ctx, v, h2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second Purge = %v, want ErrNotFound", err)
	}
	if err := b.Restore(ctx, v, h2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Restore(purged) = %v, want ErrNotFound", err)
	}
	h3, err := b.Trash(ctx, v, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Purge(ctx, v, h3); err != nil {
		t.Fatal(err)
	}
	if tr := trashOf(t, policy); len(tr) != 0 {
		t.Errorf("rbd trash left %+v", tr)
	}
}
