package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/volplugin/volplugin/storage"
)

// Trash keeps the image file and its snapshots (renamed, not copied) and
// frees the name; Restore brings them back, data included, unless the name
// is taken; Purge deletes them. A mounted or attached image is refused.
func TestTrashRestorePurge(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	if _, err := b.Trash(ctx, v, time.Hour); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Trash(absent) = %v, want ErrNotFound", err)
	}
	mustCreate(t, b, v)
	m := mustMount(t, b, v)
	if err := os.WriteFile(filepath.Join(m.Path, "f"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Trash(ctx, v, time.Hour); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Trash(mounted) = %v, want ErrInUse", err)
	}
	mustUnmount(t, b, v)
	if _, err := b.CreateSnapshot(ctx, v, "s1"); err != nil {
		t.Fatal(err)
	}
	h1, err := b.Trash(ctx, v, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Exists(ctx, v); ok {
		t.Fatal("image still under its name after Trash")
	}
	if ids, _ := b.List(ctx); len(ids) != 0 {
		t.Errorf("List after Trash = %v", ids)
	}

	// The name is free; a restore over the new image is refused.
	mustCreate(t, b, v)
	if err := b.Restore(ctx, v, h1); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Restore over a new image = %v, want ErrExists", err)
	}
	h2, err := b.Trash(ctx, v, time.Hour)
	if err != nil || h2 == h1 {
		t.Fatalf("second Trash = %q, %v (first %q)", h2, err, h1)
	}
	for _, bad := range []string{"", "..", "../../images", "a/b"} {
		if err := b.Restore(ctx, v, bad); err == nil {
			t.Errorf("Restore(handle %q) succeeded", bad)
		}
	}
	if err := b.Restore(ctx, v, h1); err != nil {
		t.Fatal(err)
	}
	m = mustMount(t, b, v)
	if got, err := os.ReadFile(filepath.Join(m.Path, "f")); err != nil || string(got) != "kept" {
		t.Errorf("restored data %q, %v", got, err)
	}
	mustUnmount(t, b, v)
	if snaps, err := b.ListSnapshots(ctx, v); err != nil || len(snaps) != 1 || snaps[0] != "s1" {
		t.Errorf("restored snapshots %v, %v", snaps, err)
	}
	if err := b.Purge(ctx, v, h2); err != nil {
		t.Fatal(err)
	}
	if err := b.Purge(ctx, v, h2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second Purge = %v, want ErrNotFound", err)
	}
	if err := b.Restore(ctx, v, h2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Restore(purged) = %v, want ErrNotFound", err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.dataDir, "trash", v.Policy)); !os.IsNotExist(err) {
		t.Errorf("empty trash dirs left: %v", err)
	}
}
