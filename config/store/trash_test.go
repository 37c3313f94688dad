package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/lock"
)

// A forced remove deletes every record of the volume in one transaction,
// snapshot records and usage included (a mount lock stays with its host),
// so a volume created again under the name starts clean.
func TestForceRemoveClearsEveryRecord(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	createVolume(t, s, ref)
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	for i := range 2 {
		if _, err := s.BeginOp(ctx, ref, "snapshot", h, false); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(time.Duration(i) * time.Second)
		if err := s.FinishSnapshot(ctx, ref, config.Snapshot{Name: config.SnapshotName(at), Time: at, By: "t"}, h); err != nil {
			t.Fatal(err)
		}
	}
	locks := lock.New(s.Client(), s.Keys(), 5*time.Second)
	host, _ := locks.Grant(ctx, "h1", "", 30)
	req := config.MountRequest{Hostname: "h1", Lease: host.ID, MountID: "m"}
	if _, err := locks.Acquire(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForceRemove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Dump(ctx)
	for k := range d {
		if strings.HasSuffix(k, "/p/v") && k != s.Keys().Use(ref) || strings.Contains(k, "/p/v/") {
			t.Errorf("forced remove left %s", k)
		}
	}
	if _, ok := d[s.Keys().Use(ref)]; !ok {
		t.Error("forced remove took the mount lock from its host")
	}
	if err := locks.Revoke(ctx, host.ID); err != nil {
		t.Fatal(err)
	}
	createVolume(t, s, ref)
	if snaps, _ := s.ListSnapshots(ctx, ref); len(snaps) != 0 {
		t.Errorf("re-created volume inherited %v", snaps)
	}
	if u, _, _ := s.GetUsage(ctx, ref); u != nil {
		t.Errorf("re-created volume inherited usage %+v", u)
	}
}

// Moving a volume to the trash and back is one transaction each way, and
// the trash key layout is the documented one.
func TestTrashKeys(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	createVolume(t, s, ref)
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	if _, err := s.BeginRemove(ctx, ref, h, 0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e, _, err := s.FinishTrash(ctx, ref, config.TrashEntry{ID: config.TrashID(now), RemovedAt: now, Expires: now.Add(time.Hour)}, h)
	if err != nil {
		t.Fatal(err)
	}
	tref := config.TrashRef{Volume: ref, ID: e.ID}
	d, _ := s.Dump(ctx)
	if len(d) != 2 || d[s.Keys().Trash(tref)] == "" || d[s.Keys().Schema()] == "" {
		t.Fatalf("after the move: %v, want the schema and %s only", keysOf(d), s.Keys().Trash(tref))
	}
	if want := s.Keys().Prefix + "/trash/p/v/" + e.ID; s.Keys().Trash(tref) != want {
		t.Errorf("trash key %s, want %s", s.Keys().Trash(tref), want)
	}
	if _, err := s.BeginRestore(ctx, tref, h, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseOp(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
	d, _ = s.Dump(ctx)
	if _, ok := d[s.Keys().Trash(tref)]; ok || d[s.Keys().Volume(ref)] == "" || d[s.Keys().Runtime(ref)] == "" {
		t.Errorf("after the restore: %v", keysOf(d))
	}
}

func keysOf(d map[string]string) []string {
	out := make([]string, 0, len(d))
	for k := range d {
		out = append(out, k)
	}
	return out
}
