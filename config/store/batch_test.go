package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// A batched begin and finish are all or nothing: one volume busy refuses
// the whole begin with nothing locked; one lock lost refuses the whole
// finish with nothing recorded and the other locks still held.
func TestBatchesAreAllOrNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var refs []config.VolumeRef
	var items []RefIntent
	for i := range 3 {
		ref := config.VolumeRef{Policy: "p", Name: fmt.Sprintf("v%d", i)}
		createVolume(t, s, ref)
		refs = append(refs, ref)
		items = append(items, RefIntent{Ref: ref, Intent: Intent{Op: "snapshot", Snapshot: "s"}})
	}
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	if _, err := s.BeginOp(ctx, refs[1], "resize", h, false); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.BeginIntents(ctx, items, h); ok || err != nil {
		t.Fatalf("batched begin with a busy volume = %v, %v; want refused", ok, err)
	}
	for _, ref := range []config.VolumeRef{refs[0], refs[2]} {
		if _, err := s.BeginOp(ctx, ref, "resize", h, false); err != nil {
			t.Fatalf("%s locked by a refused batch: %v", ref, err)
		}
		if _, err := s.ReleaseOp(ctx, ref, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ReleaseOp(ctx, refs[1], h); err != nil {
		t.Fatal(err)
	}
	vols, ok, err := s.BeginIntents(ctx, items, h)
	if !ok || err != nil || len(vols) != 3 || vols[2].Ref() != refs[2] {
		t.Fatalf("batched begin = %v, %v, %v", vols, ok, err)
	}
	now := time.Now().UTC()
	var recs []RefSnapshot
	for _, ref := range refs {
		recs = append(recs, RefSnapshot{Ref: ref, Snap: config.Snapshot{Name: config.SnapshotName(now), Time: now}})
	}
	// One lock is lost (here: given back) before the finish.
	if _, err := s.ReleaseOp(ctx, refs[0], h); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.FinishSnapshots(ctx, recs, h); ok || err != nil {
		t.Fatalf("batched finish with a lock lost = %v, %v; want refused", ok, err)
	}
	for _, ref := range refs {
		if snaps, _ := s.ListSnapshots(ctx, ref); len(snaps) != 0 {
			t.Errorf("%s: %v recorded by a refused batch", ref, snaps)
		}
	}
	if _, err := s.BeginOp(ctx, refs[2], "resize", h, false); !errors.Is(err, config.ErrInUse) {
		t.Errorf("%s after a refused finish: %v, want still locked (ErrInUse)", refs[2], err)
	}
	lists, ok, err := s.FinishSnapshots(ctx, recs[1:], h)
	if !ok || err != nil || len(lists) != 2 || len(lists[1]) != 1 || lists[1][0].Name != recs[2].Snap.Name {
		t.Fatalf("batched finish = %v, %v, %v", lists, ok, err)
	}
	big := make([]RefIntent, BatchSize+1)
	if _, _, err := s.BeginIntents(ctx, big, h); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("a batch over BatchSize = %v, want ErrInvalid", err)
	}
}
