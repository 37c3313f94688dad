//go:build cgo && pacific

package ceph

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// imageSum is the SHA-256 of an image's whole content, read through librbd.
func imageSum(t *testing.T, b *Backend, vl vol) [32]byte {
	t.Helper()
	img, done, err := b.openVolume(context.Background(), vl, true)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	buf := make([]byte, vl.Size)
	if _, err := img.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(buf)
}

// An RBD image whose primary ext4 superblock is zeroed is refused, formatted
// or not, with nothing written and nothing left mapped; the error names rbd
// map and e2fsck -b, which (on the device the backend's mapper makes) get
// the data back.
func TestDamagedFilesystemRefused(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	v := testVol(policy, "v", 64*mib, "ext4")
	if err := b.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	payload := randBytes(t, 256<<10)
	if err := writeSync(filepath.Join(m.Path, "data"), payload); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	v.Formatted = true
	vl, err := b.resolve(v)
	if err != nil {
		t.Fatal(err)
	}
	img, done, err := b.openVolume(ctx, vl, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(make([]byte, 1024), 1024); err != nil {
		t.Fatal(err)
	}
	done()

	before := imageSum(t, b, vl)
	unformatted := v
	unformatted.Formatted = false
	var damaged error
	for _, tc := range []struct {
		v    storage.Volume
		want error
	}{{v, storage.ErrDamaged}, {unformatted, storage.ErrNotBlank}} {
		_, err := b.Mount(ctx, tc.v)
		if !errors.Is(err, tc.want) || strings.Contains(err.Error(), "rollback") {
			t.Fatalf("Mount(formatted %v) = %v, want %v and a clean rollback", tc.v.Formatted, err, tc.want)
		}
		for _, want := range []string{"`rbd map rbd/" + vl.image + "`", "`e2fsck -b 8193 -B 1024 /dev/rbd/rbd/" + vl.image + "`"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %s: %v", want, err)
			}
		}
		assertUnmapped(t, b, vl.image)
		if imageSum(t, b, vl) != before {
			t.Fatal("a refused Mount wrote to the image")
		}
		damaged = err
	}
	t.Logf("refused: %v", damaged)

	// The repair, on the device this host's mapper makes (no krbd here).
	mp, err := b.getMapper(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := mp.Map(ctx, vl.mapperImage())
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile("`(e2fsck -b [0-9]+ -B [0-9]+) ").FindStringSubmatch(damaged.Error())
	argv := append(slices.Insert(strings.Fields(cmd[1]), 1, "-y"), dev)
	_, ferr := sysexec.Run(ctx, 0, argv...)
	if err := mp.Unmap(ctx, vl.mapperImage()); err != nil {
		t.Fatal(err)
	}
	if ferr != nil && sysexec.ExitCode(ferr) != 1 {
		t.Fatalf("%v: %v", argv, ferr)
	}
	m, err = b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(m.Path, "data"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("data after e2fsck -b: %d bytes, %v; want what was written", len(got), err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
}

// zeroed, which spares a never-formatted volume the device probes before
// its first mkfs, holds only for an image without a single allocated
// object, its parent's included, and only where fast-diff lets librbd tell.
func TestZeroed(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	b := newBackend(t, "host-a")
	policy := testPolicy(t)
	removeImagesOnCleanup(t, policy, b)
	check := func(v storage.Volume, want bool) {
		t.Helper()
		vl, err := b.resolve(v)
		if err != nil {
			t.Fatal(err)
		}
		img, done, err := b.openVolume(ctx, vl, false)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		if got := zeroed(img); got != want {
			t.Fatalf("zeroed(%s) = %v, want %v", vl.image, got, want)
		}
	}
	v := testVol(policy, "v", 64*mib, "ext4")
	noFastDiff := testVol(policy, "nofd", 64*mib, "ext4")
	noFastDiff.Options = map[string]string{OptFeatures: "layering,exclusive-lock"}
	for _, x := range []storage.Volume{v, noFastDiff} {
		if err := b.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	check(v, true)
	check(noFastDiff, false) // blank, but librbd would ask every object

	// One block far past the first MiB and the superblock copies the
	// device probes read.
	vl, err := b.resolve(v)
	if err != nil {
		t.Fatal(err)
	}
	img, done, err := b.openVolume(ctx, vl, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte{1}, 50*mib); err != nil {
		t.Fatal(err)
	}
	done()
	check(v, false)

	// A clone holds no object of its own, but reads its parent's data.
	if _, err := b.CreateSnapshot(ctx, v, "s"); err != nil {
		t.Fatal(err)
	}
	clone := testVol(policy, "clone", 64*mib, "ext4")
	if err := b.CopySnapshot(ctx, v, "s", clone); err != nil {
		t.Fatal(err)
	}
	check(clone, false)
}
