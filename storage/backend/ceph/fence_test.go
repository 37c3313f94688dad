//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// TestFencing plays two hosts, each its own Backend with its own Ceph user
// (client.<policy>-a, client.<policy>-b), mount root and rbd-fuse. Host b
// cannot map while host a holds the image; once a is declared dead, b
// breaks the lock and maps, and a's late writes are refused because a's
// client is blocklisted.
func TestFencing(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	policy := testPolicy(t)
	admin := adminConn(t)
	hostWith := func(name string) *Backend {
		user, keyring := createUser(t, admin, policy+"-"+name)
		return newBackend(t, "host-"+name, func(c *Config) { c.User, c.Keyring = user, keyring })
	}
	a, b := hostWith("a"), hostWith("b")
	removeImagesOnCleanup(t, policy, b, a)
	v := testVol(policy, "shared", 128*mib, "ext4")
	if err := a.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	ma, err := a.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(t, 4*mib)
	if err := writeSync(filepath.Join(ma.Path, "a.bin"), data); err != nil {
		t.Fatal(err)
	}
	want := sum(t, filepath.Join(ma.Path, "a.bin"))

	_, err = b.Mount(ctx, v)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "host-a") {
		t.Fatalf("Mount on b while a holds it = %v, want ErrInUse naming host-a", err)
	}
	assertUnmapped(t, b, policy+":shared")
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Destroy on b while a holds it = %v, want ErrInUse", err)
	}
	if err := a.BreakLock(ctx, v, "test"); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("BreakLock on the host that has it mounted = %v, want ErrInUse", err)
	}
	if err := b.BreakLock(ctx, v, ""); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("BreakLock without a reason = %v, want ErrInvalid", err)
	}

	// Host a is declared dead (in volplugin: its etcd lease expired). Its
	// rbd-fuse still runs, as on a host cut off from etcd but not from Ceph.
	if err := b.BreakLock(ctx, v, "host-a lease expired"); err != nil {
		t.Fatal(err)
	}
	mb, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(t, filepath.Join(mb.Path, "a.bin")); got != want {
		t.Fatal("host b does not see what host a wrote before it was fenced")
	}

	// a's late write is refused: its client is blocklisted.
	if err := writeSync(filepath.Join(ma.Path, "late.bin"), randBytes(t, mib)); err == nil {
		t.Fatal("host a wrote to the image after it was fenced")
	}
	// b is unaffected.
	if err := writeSync(filepath.Join(mb.Path, "b.bin"), randBytes(t, mib)); err != nil {
		t.Fatalf("host b cannot write: %v", err)
	}
	if err := b.BreakLock(ctx, v, "again"); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("BreakLock on the host that now has it = %v, want ErrInUse", err)
	}

	// The fenced host cleans up as well as it can; its filesystem is dead.
	if err := a.Unmount(ctx, v); err != nil {
		t.Logf("unmount on the fenced host: %v", err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
}
