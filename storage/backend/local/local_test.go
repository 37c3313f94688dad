package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

func TestNew(t *testing.T) {
	b, err := New(Config{DataDir: "/var/lib/x"})
	if err != nil {
		t.Fatal(err)
	}
	if b.mountRoot != config.DefaultMountPath || b.timeout != DefaultTimeout {
		t.Errorf("defaults: %q %s", b.mountRoot, b.timeout)
	}
	for _, cfg := range []Config{
		{},
		{DataDir: "rel"},
		{DataDir: "/x", MountRoot: "rel"},
		{DataDir: "/x", Timeout: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestCreateExistsList(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	if ids, err := b.List(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("List on empty = %v, %v", ids, err)
	}
	vols := []storage.Volume{
		{Policy: "p2", Name: "z", Size: mib},
		{Policy: "p1", Name: "a-b", Size: mib},
		{Policy: "p1", Name: "a", Size: mib},
	}
	for _, v := range vols {
		mustCreate(t, b, v)
	}
	if err := b.Create(ctx, vols[0]); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	ok, err := b.Exists(ctx, vols[0])
	if err != nil || !ok {
		t.Errorf("Exists = %v, %v", ok, err)
	}
	if ok, err := b.Exists(ctx, storage.Volume{Policy: "p2", Name: "nope"}); err != nil || ok {
		t.Errorf("Exists(absent) = %v, %v", ok, err)
	}
	ids, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.ID{{Policy: "p1", Name: "a"}, {Policy: "p1", Name: "a-b"}, {Policy: "p2", Name: "z"}}
	if !slices.Equal(ids, want) {
		t.Errorf("List = %v, want %v", ids, want)
	}
	p, _ := b.paths("p1", "a")
	fi, err := os.Stat(p.image)
	if err != nil || fi.Size() != mib {
		t.Fatalf("image %v, %v", fi, err)
	}
	if err := b.Create(ctx, storage.Volume{Policy: "p", Name: "zero"}); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("Create size 0 = %v, want ErrInvalid", err)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	good := storage.Volume{Policy: "pol", Name: "vol", Size: mib, Filesystem: "ext4", Mkfs: []string{"false"}}
	for _, bad := range []string{"../x", "a/b", "", ".", "..", "/abs", "x\n"} {
		vols := []storage.Volume{good, good}
		vols[0].Policy = bad
		vols[1].Name = bad
		for _, v := range vols {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, config.ErrInvalid) {
					t.Errorf("%s(%q/%q) = %v, want ErrInvalid", op, v.Policy, v.Name, err)
				}
			}
			check("Create", b.Create(ctx, v))
			check("Destroy", b.Destroy(ctx, v))
			_, err := b.Exists(ctx, v)
			check("Exists", err)
			check("Resize", b.Resize(ctx, v, 2*mib))
			_, err = b.Mount(ctx, v)
			check("Mount", err)
			check("Unmount", b.Unmount(ctx, v))
			check("CreateSnapshot", errOf(b.CreateSnapshot(ctx, v, "s")))
			check("RemoveSnapshot", b.RemoveSnapshot(ctx, v, "s"))
			_, err = b.ListSnapshots(ctx, v)
			check("ListSnapshots", err)
			check("CopySnapshot to", b.CopySnapshot(ctx, good, "s", v))
			if p := b.MountPath(v); p != "" {
				t.Errorf("MountPath(%q/%q) = %q", v.Policy, v.Name, p)
			}
		}
		for _, op := range []struct {
			name string
			err  error
		}{
			{"CreateSnapshot", errOf(b.CreateSnapshot(ctx, good, bad))},
			{"RemoveSnapshot", b.RemoveSnapshot(ctx, good, bad)},
			{"CopySnapshot", b.CopySnapshot(ctx, good, bad, good)},
		} {
			if !errors.Is(op.err, config.ErrInvalid) {
				t.Errorf("%s(snapshot %q) = %v, want ErrInvalid", op.name, bad, op.err)
			}
		}
	}
	for _, dir := range []string{b.dataDir, b.mountRoot} {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s not empty: %v", dir, entries)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, elems := range [][]string{{".."}, {"a", "../.."}, {"."}, {}} {
		if _, err := under("/root", elems...); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("under(%q) = %v", elems, err)
		}
	}
	if p, err := under("/root", "a", "b.img"); err != nil || p != "/root/a/b.img" {
		t.Errorf("under = %q, %v", p, err)
	}
}

func TestDestroy(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Destroy(absent) = %v, want ErrNotFound", err)
	}
	mustCreate(t, b, v)
	if err := b.Create(ctx, v); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Create twice = %v, want ErrExists", err)
	}
	mustMount(t, b, v)
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Destroy(mounted) = %v, want ErrInUse", err)
	}
	p, _ := b.paths(v.Policy, v.Name)
	if _, err := os.Stat(p.image); err != nil {
		t.Fatalf("image gone after refused Destroy: %v", err)
	}
	mustUnmount(t, b, v)

	// Attached but not mounted (say, by hand) is in use too.
	dev, err := b.attach(ctx, p.image)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Destroy(attached %s) = %v, want ErrInUse", dev, err)
	}
	if err := b.detach(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Exists(ctx, v); ok {
		t.Fatal("image exists after Destroy")
	}
	if _, err := os.Stat(filepath.Dir(p.image)); !os.IsNotExist(err) {
		t.Errorf("empty policy dir left: %v", err)
	}
}

// A destroy cut short after the image went (a crash between the image and
// its snapshots) is finished by the next Destroy, which still says the
// image is not found.
func TestDestroyFinishesLeftoverSnapshots(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	if _, err := b.CreateSnapshot(ctx, v, "20260101T000000.000Z"); err != nil {
		t.Fatal(err)
	}
	p, _ := b.paths(v.Policy, v.Name)
	if err := os.Remove(p.image); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Destroy without the image = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(p.snapDir); !os.IsNotExist(err) {
		t.Errorf("snapshots left after Destroy: %v", err)
	}
}

// An image is made whole or not at all: no temporary file is left beside
// it, and the name is still taken exclusively.
func TestCreateLeavesNoTemporary(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	ents, err := os.ReadDir(filepath.Dir(p.image))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("files beside the image: %v", ents)
	}
	if fi, err := os.Stat(p.image); err != nil || fi.Size() != 64*mib {
		t.Errorf("image: %v, %v", fi, err)
	}
	if err := b.Create(ctx, v); !errors.Is(err, storage.ErrExists) {
		t.Errorf("Create twice = %v, want ErrExists", err)
	}
}

// Capacity is the data dir filesystem's free space (in bytes, not blocks);
// its Store is the data dir's identity, made on first use, the same for
// every backend on that directory and another for another directory.
func TestCapacity(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "not", "yet")
	if id, err := ReadStoreID(dir); id != "" || err != nil {
		t.Errorf("ReadStoreID of a data dir not made yet = %q, %v", id, err)
	}
	b, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Capacity(ctx, storage.Volume{})
	if err != nil || c.Available <= 0 || !strings.HasPrefix(c.Store, StorePrefix) {
		t.Fatalf("Capacity of a data dir not made yet = %+v, %v", c, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	// Other writers on the machine move it a little; a unit mistake moves
	// it by a factor of 512 or more.
	if want := int64(st.Bavail) * st.Bsize; c.Available < want/2 || c.Available > want*2 {
		t.Errorf("Capacity = %d, statfs says %d", c.Available, want)
	}
	id, err := ReadStoreID(dir)
	if err != nil || StorePrefix+id != c.Store {
		t.Errorf("ReadStoreID = %q, %v; Capacity's store is %q", id, err, c.Store)
	}
	again, _ := New(Config{DataDir: dir})
	if got, err := again.StoreID(); got != id || err != nil {
		t.Errorf("StoreID of a second backend on the data dir = %q, %v; want %q", got, err, id)
	}
	other, _ := New(Config{DataDir: filepath.Join(root, "other")})
	if got, err := other.StoreID(); got == id || err != nil {
		t.Errorf("StoreID of another data dir = %q, %v; the first is %q", got, err, id)
	}
	if err := os.WriteFile(filepath.Join(root, "other", storeIDFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Capacity(ctx, storage.Volume{}); err == nil || !strings.Contains(err.Error(), "hex") {
		t.Errorf("Capacity with a damaged identity = %v", err)
	}
}
