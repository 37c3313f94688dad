package csi_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/volplugin/volplugin/config"
)

// mountsUnder counts the mounts at or below path.
func mountsUnder(t *testing.T, path string) int {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(path))
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

// TestStageConvergesAfterRestart: volcsi stops after the volume is mounted
// and locked but before the staging bind (the bind is undone by hand, as a
// crash between the two leaves it), a new volcsi adopts the mount from its
// state file, and the kubelet's re-issued NodeStageVolume converges: one
// mount of the volume, the lock still this node's; unstaging then leaves no
// mount and no lock.
func TestStageConvergesAfterRestart(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	dir := t.TempDir()
	c.cleanMounts(t, dir)
	p := c.startPlugin(t, "node1", dir)
	n := dial(t, p)
	ctx := context.Background()
	vol, err := n.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "restart", VolumeCapabilities: []*csipb.VolumeCapability{writer},
		Parameters: map[string]string{"policy": "policy1"}})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	ref := mustRef(t, id)
	staging := filepath.Join(dir, "staging")
	if err := stage(ctx, n, id, staging); err != nil {
		t.Fatal(err)
	}
	p.stop()
	if err := unix.Unmount(staging, 0); err != nil {
		t.Fatal(err)
	}

	n = dial(t, c.startPlugin(t, "node1", dir))
	for range 2 {
		if err := stage(ctx, n, id, staging); err != nil {
			t.Fatalf("re-issued stage after the restart: %v", err)
		}
	}
	if got := mountsUnder(t, filepath.Join(dir, "mnt")); got != 1 {
		t.Errorf("%d mounts of the volume under the mount root, want 1", got)
	}
	if u, err := c.api.Use(ctx, ref); err != nil || u.Hostname != "node1" {
		t.Errorf("lock after the restart: %+v %v, want node1's", u, err)
	}
	unstage(t, ctx, n, id, staging)
	if got := mountsUnder(t, dir); got != 0 {
		t.Errorf("%d mounts left under %s after unstage", got, dir)
	}
	if _, err := c.api.Use(ctx, ref); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("lock after unstage: %v, want none", err)
	}
}
