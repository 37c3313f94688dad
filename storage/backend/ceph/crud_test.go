//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

func TestCreateExistsListDestroy(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	conn := adminConn(t)

	vols := []storage.Volume{
		testVol(policy, "z", 8*mib, "ext4"),
		testVol(policy, "a.b", 8*mib, "ext4"),
		testVol(policy, "a", 8*mib, "ext4"),
	}
	for _, v := range vols {
		if err := b.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Create(ctx, vols[0]); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	if ok, err := b.Exists(ctx, vols[1]); err != nil || !ok {
		t.Errorf("Exists = %v, %v", ok, err)
	}
	absent := testVol(policy, "nope", mib, "ext4")
	if ok, err := b.Exists(ctx, absent); err != nil || ok {
		t.Errorf("Exists(absent) = %v, %v", ok, err)
	}
	if err := b.Destroy(ctx, absent); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Destroy(absent) = %v, want ErrNotFound", err)
	}
	ids, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ours []storage.ID
	for _, id := range ids {
		if id.Policy == policy {
			ours = append(ours, id)
		}
	}
	want := []storage.ID{{Policy: policy, Name: "a"}, {Policy: policy, Name: "a.b"}, {Policy: policy, Name: "z"}}
	if !slices.Equal(ours, want) {
		t.Errorf("List = %v, want %v", ours, want)
	}

	// The image really is <policy>:<name> with the default features.
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	img, err := rbd.OpenImageReadOnly(io, policy+":a.b", rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	features, err := img.GetFeatures()
	size, serr := img.GetSize()
	img.Close()
	if err != nil || serr != nil || size != 8*mib {
		t.Fatalf("features %v, size %d %v", err, size, serr)
	}
	fs := rbd.FeatureSet(features)
	got := fs.Names()
	for _, f := range []string{"exclusive-lock", "object-map", "fast-diff", "layering"} {
		if !slices.Contains(got, f) {
			t.Errorf("image features %v lack %s", got, f)
		}
	}

	// Snapshots are purged with the image.
	if _, err := b.CreateSnapshot(ctx, vols[0], "s1"); err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if err := b.Destroy(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if left := policyImages(t, conn, policy); len(left) > 0 {
		t.Errorf("images left: %v", left)
	}
}

func TestCreateOptions(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	v := testVol(policy, "v", mib, "ext4")
	for _, bad := range []storage.Volume{
		{Policy: policy, Name: "zero"},
		{Policy: policy, Name: "neg", Size: -1},
		{Policy: policy, Name: "feat", Size: mib, Options: map[string]string{OptFeatures: "layering,warp-drive"}},
	} {
		if err := b.Create(ctx, bad); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	v.Options = map[string]string{OptFeatures: "layering"}
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, v); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	b, err := New(Config{Conf: "/nonexistent/ceph.conf", MountRoot: t.TempDir(), RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	good := storage.Volume{Policy: "pol", Name: "vol", Size: mib}
	for _, bad := range []string{"../x", "a/b", "", ".", "..", "a:b", "x\n"} {
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
			check("BreakLock", b.BreakLock(ctx, v, "test"))
			check("CreateSnapshot", errOf(b.CreateSnapshot(ctx, v, "s")))
			check("RemoveSnapshot", b.RemoveSnapshot(ctx, v, "s"))
			_, err = b.ListSnapshots(ctx, v)
			check("ListSnapshots", err)
			check("CopySnapshot to", b.CopySnapshot(ctx, good, "s", v))
			if p := b.MountPath(v); p != "" {
				t.Errorf("MountPath(%q/%q) = %q", v.Policy, v.Name, p)
			}
		}
		if _, err := b.CreateSnapshot(ctx, good, bad); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("CreateSnapshot(snapshot %q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := b.BreakLock(ctx, good, " "); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("BreakLock without a reason = %v, want ErrInvalid", err)
	}
	if p := b.MountPath(good); p != filepath.Join(b.cfg.MountRoot, "pol", "vol") {
		t.Errorf("MountPath = %q", p)
	}
}

// TestUnreachableCluster: with no mon to talk to, calls fail after the
// configured op timeout instead of librados' default 300 s.
func TestUnreachableCluster(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ceph.conf")
	// Port 1 on localhost: connection refused, forever.
	if err := os.WriteFile(conf, []byte("[global]\nmon_host = 127.0.0.1:1\nauth_client_required = none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Conf: conf, MountRoot: dir, RunDir: dir, OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start := time.Now()
	err = b.Create(context.Background(), storage.Volume{Policy: "p", Name: "v", Size: mib})
	if !errors.Is(err, config.ErrUnavailable) {
		t.Fatalf("Create = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Create took %s with a 2s op timeout", d)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exists(context.Background(), storage.Volume{Policy: "p", Name: "v"}); err == nil {
		t.Fatal("Exists after Close succeeded")
	}
}
