package volplugin

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
)

// fsBytes is the size of the filesystem mounted at path.
func fsBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

// An xfs volume cannot grow unmounted: volmaster grows its image, and the
// next mount grows the filesystem to it; the data stays.
func TestResizeGrowsFilesystemAtNextMount(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	a := c.startHost(t, "hostA", root, false)
	// xfs refuses filesystems under 300 MB; the image is sparse.
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/x", "Opts": map[string]string{"size": "320MB", "filesystem": "xfs"}}); e != "" {
		t.Fatalf("Create: %s", e)
	}
	p := a.mount(t, "policy1/x", "m1")
	before := fsBytes(t, p)
	if err := os.WriteFile(filepath.Join(p, "f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.unmount(t, "policy1/x", "m1")

	ref := config.VolumeRef{Policy: "policy1", Name: "x"}
	if _, err := c.api.ResizeVolume(context.Background(), ref, "640MB"); err != nil {
		t.Fatalf("resize: %v", err)
	}
	p = a.mount(t, "policy1/x", "m2")
	defer a.unmount(t, "policy1/x", "m2")
	after := fsBytes(t, p)
	if after < before+250<<20 {
		t.Errorf("filesystem after the resize and a mount: %d bytes, before %d: not grown by ~320 MB", after, before)
	}
	if got, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(got) != "kept" {
		t.Errorf("data after the grow: %q, %v", got, err)
	}
	t.Logf("xfs filesystem %d -> %d MiB", before>>20, after>>20)
}

// Resized while mounted: volmaster grows the image (its own mount root is
// not where the volume is mounted), and this host, told of the new size by
// its runtime long poll, refreshes the loop device and grows the filesystem
// online; the container's mount stays.
func TestResizeWhileMountedGrowsOnline(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	a := c.startHost(t, "hostA", root, false)
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/on", "Opts": map[string]string{"size": "320MB", "filesystem": "xfs"}}); e != "" {
		t.Fatalf("Create: %s", e)
	}
	p := a.mount(t, "policy1/on", "m1")
	defer a.unmount(t, "policy1/on", "m1")
	before := fsBytes(t, p)
	if _, err := c.api.ResizeVolume(context.Background(), config.VolumeRef{Policy: "policy1", Name: "on"}, "640MB"); err != nil {
		t.Fatalf("resize while mounted: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for fsBytes(t, p) < before+250<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("filesystem still %d bytes 15 s after the resize (was %d)", fsBytes(t, p), before)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
