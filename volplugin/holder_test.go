package volplugin

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// Two daemons given one host label (volplugin and volcsi on one machine,
// each with its own state directory) must never share a mount lock: each
// would map and mount the image. Neither may take, release or, when it
// starts, recover the other's lock; the first's restart keeps its own.
func TestTwoDaemonsWithOneHostLabel(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	rootA, rootB := t.TempDir(), t.TempDir()
	unmountAll(t, rootA, c.dataDir)
	unmountAll(t, rootB, c.dataDir)
	stateA, stateB := filepath.Join(c.stateDir, "a"), filepath.Join(c.stateDir, "b")
	a := c.startHostWith(t, "node1", rootA, Options{StateDir: stateA})
	b := c.startHostWith(t, "node1", rootB, Options{StateDir: stateB})
	holderA := config.HolderID("volplugin", stateA)
	ctx := context.Background()
	ref := config.VolumeRef{Policy: "policy1", Name: "shared"}
	if _, e := a.call(t, "Create", map[string]any{"Name": ref.String()}); e != "" {
		t.Fatalf("Create: %s", e)
	}
	a.mount(t, ref.String(), "idA")
	lockOfA := func(when string) {
		t.Helper()
		u, err := c.api.Use(ctx, ref)
		if err != nil || u.Hostname != "node1" || u.Holder != holderA || strings.Join(u.MountIDs, ",") != "idA" {
			t.Fatalf("%s: lock = %+v, %v; want node1's first daemon (%s) holding idA", when, u, err, holderA)
		}
	}
	lockOfA("after the first daemon's mount")
	if _, e := b.call(t, "Mount", map[string]string{"Name": ref.String(), "ID": "idB"}); !strings.Contains(e, `host "node1" by `+holderA) {
		t.Fatalf("second daemon's mount while the first holds the volume: %q, want a refusal naming %s", e, holderA)
	}
	// An Unmount of an ID it never mounted releases nothing of the other's.
	b.unmount(t, ref.String(), "idA")
	lockOfA("after the second daemon's unmount of the first's ID")
	// Its restart runs recovery, which must leave the other's lock alone.
	b.stop()
	b = c.startHostWith(t, "node1", rootB, Options{StateDir: stateB})
	lockOfA("after the second daemon restarted")
	// The first daemon's own restart (same holder, new lease) keeps its lock.
	a.stop()
	a = c.startHostWith(t, "node1", rootA, Options{StateDir: stateA})
	a.mount(t, ref.String(), "idA")
	lockOfA("after the first daemon restarted")
	if _, e := b.call(t, "Mount", map[string]string{"Name": ref.String(), "ID": "idB"}); e == "" {
		t.Fatal("second daemon mounted the volume the restarted first one holds")
	}
	a.unmount(t, ref.String(), "idA")
	b.mount(t, ref.String(), "idB")
	if u, err := c.api.Use(ctx, ref); err != nil || u.Holder != config.HolderID("volplugin", stateB) {
		t.Fatalf("lock after the first daemon released = %+v, %v; want the second daemon's", u, err)
	}
	b.unmount(t, ref.String(), "idB")
}
