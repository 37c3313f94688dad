package volops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// TakeMany snapshots a batch's volumes in two transactions where every
// volume of the batch may be snapshotted, and one by one where one of them
// is busy. Every snapshot taken is recorded (and, from a batch, comes back
// with its volume's records); none is left without a record, no lock or
// intent is left behind, and the busy volume is refused as Take refuses it.
func TestTakeManyBatchesAndFallsBack(t *testing.T) {
	e, refs := snapshotSetup(t, store.BatchSize+5)
	ctx := context.Background()
	// A volume of the second batch is busy with another operation.
	busy := refs[store.BatchSize+2]
	if _, err := e.st.BeginOp(ctx, busy, "resize", e.h, false); err != nil {
		t.Fatal(err)
	}
	got := e.ops.TakeMany(ctx, refs, e.h)
	if len(got) != len(refs) {
		t.Fatalf("%d results for %d volumes", len(got), len(refs))
	}
	for i, r := range got {
		if r.Ref != refs[i] {
			t.Fatalf("result %d is for %s, want %s", i, r.Ref, refs[i])
		}
		recs, err := e.st.ListSnapshots(ctx, r.Ref)
		if err != nil {
			t.Fatal(err)
		}
		made, err := e.lb.ListSnapshots(ctx, storage.Volume{Policy: r.Ref.Policy, Name: r.Ref.Name})
		if err != nil {
			t.Fatal(err)
		}
		if r.Ref == busy {
			if !errors.Is(r.Err, config.ErrInUse) || len(recs) != 0 || len(made) != 0 {
				t.Errorf("busy volume: %v, %d records, %d backend snapshots; want ErrInUse and none", r.Err, len(recs), len(made))
			}
			continue
		}
		if r.Err != nil || len(recs) != 1 || recs[0].Name != r.Snap.Name || !slices.Equal(made, []string{r.Snap.Name}) {
			t.Errorf("%s: %v, records %v, backend %v; want the one snapshot %s recorded", r.Ref, r.Err, recs, made, r.Snap.Name)
		}
		batched := i < store.BatchSize
		if batched != (r.Snaps != nil) || batched && (len(r.Snaps) != 1 || r.Snaps[0].Name != r.Snap.Name) {
			t.Errorf("%s: records returned %v (batched %v)", r.Ref, r.Snaps, batched)
		}
		// Its lock and intent are gone: another operation may begin.
		if _, err := e.st.BeginOp(ctx, r.Ref, "resize", e.h, false); err != nil {
			t.Errorf("%s after TakeMany: %v", r.Ref, err)
		} else if _, err := e.st.ReleaseOp(ctx, r.Ref, e.h); err != nil {
			t.Fatal(err)
		}
	}
	if in, err := e.st.ListInterrupted(ctx); err != nil || len(in) != 0 {
		t.Errorf("intents left: %v, %v", in, err)
	}
}

// A guard that fails (a deposed leader) stops TakeMany at once: no
// snapshot is made in any batch, and every result says why.
func TestTakeManyStopsWhenTheGuardFails(t *testing.T) {
	e, refs := snapshotSetup(t, store.BatchSize+3)
	ctx := context.Background()
	deposed := clientv3.Compare(clientv3.CreateRevision("/no/such/election/key"), ">", 0)
	for _, r := range e.ops.TakeMany(ctx, refs, e.h, deposed) {
		if !errors.Is(r.Err, store.ErrNotLeader) {
			t.Errorf("%s: %v, want ErrNotLeader", r.Ref, r.Err)
		}
		if made, _ := e.lb.ListSnapshots(ctx, storage.Volume{Policy: r.Ref.Policy, Name: r.Ref.Name}); len(made) != 0 {
			t.Errorf("%s: a deposed leader made %v", r.Ref, made)
		}
	}
}

// PruneMany removes what the retention rules do not keep, oldest first: the
// first removal of each volume in a batch, further ones one by one, and the
// volumes of a batch that is refused (one busy) one by one too. Records and
// backend agree afterwards and no lock or intent is left.
func TestPruneManyBatchesAndFallsBack(t *testing.T) {
	e, refs := snapshotSetup(t, store.BatchSize+4)
	ctx := context.Background()
	// Three snapshots each, a second apart (names are timestamps).
	clock := time.Now()
	e.ops.Now = func() time.Time { return clock }
	for range 3 {
		for _, r := range e.ops.TakeMany(ctx, refs, e.h) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		clock = clock.Add(time.Second)
	}
	items := make([]PruneItem, len(refs))
	for i, ref := range refs {
		snaps, err := e.st.ListSnapshots(ctx, ref)
		if err != nil || len(snaps) != 3 {
			t.Fatalf("%s: %d snapshots, %v", ref, len(snaps), err)
		}
		// The first volume keeps one (two to remove: one batched, one
		// alone); the others keep two.
		items[i] = PruneItem{Ref: ref, Snaps: snaps, Keep: 2}
		if i == 0 {
			items[i].Keep = 1
		}
	}
	// A volume of the second batch is busy: that batch goes one by one.
	busy := refs[store.BatchSize+1]
	if _, err := e.st.BeginOp(ctx, busy, "resize", e.h, false); err != nil {
		t.Fatal(err)
	}
	for i, p := range e.ops.PruneMany(ctx, items, e.h) {
		want := []string{items[i].Snaps[0].Name}
		if i == 0 {
			want = append(want, items[i].Snaps[1].Name)
		}
		if p.Ref == busy {
			if !errors.Is(p.Err, config.ErrInUse) || len(p.Removed) != 0 {
				t.Errorf("busy volume: %v, removed %v; want ErrInUse and nothing", p.Err, p.Removed)
			}
			continue
		}
		if p.Err != nil || !slices.Equal(p.Removed, want) {
			t.Errorf("%s: removed %v, %v; want %v", p.Ref, p.Removed, p.Err, want)
		}
		recs, _ := e.st.ListSnapshots(ctx, p.Ref)
		made, _ := e.lb.ListSnapshots(ctx, storage.Volume{Policy: p.Ref.Policy, Name: p.Ref.Name})
		if len(recs) != 3-len(want) || len(made) != len(recs) {
			t.Errorf("%s after the prune: records %v, backend %v", p.Ref, recs, made)
		}
	}
	if _, err := e.st.ReleaseOp(ctx, busy, e.h); err != nil {
		t.Fatal(err)
	}
	if in, err := e.st.ListInterrupted(ctx); err != nil || len(in) != 0 {
		t.Errorf("intents left: %v, %v", in, err)
	}
	for _, ref := range refs {
		if _, err := e.st.BeginOp(ctx, ref, "resize", e.h, false); err != nil {
			t.Errorf("%s locked after PruneMany: %v", ref, err)
		} else if _, err := e.st.ReleaseOp(ctx, ref, e.h); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotSetup is setup with the local backend taking snapshots and n
// volumes, v00 onwards: more than a batch when n > store.BatchSize.
func snapshotSetup(t *testing.T, n int) (*env, []config.VolumeRef) {
	t.Helper()
	e := setup(t)
	e.ops.Backends = map[string]storage.Snapshotter{config.BackendLocal: e.lb}
	refs := make([]config.VolumeRef, n)
	for i := range refs {
		refs[i] = e.volume(t, fmt.Sprintf("v%02d", i), "")
	}
	return e, refs
}

// A finish whose answer was lost after etcd committed it (simulated here by
// finishing twice: the second finds its lock gone) leaves the recorded
// snapshot alone instead of removing it as unrecorded.
func TestFinishAfterALostAnswerKeepsTheRecordedSnapshot(t *testing.T) {
	e, refs := snapshotSetup(t, 1)
	ctx := context.Background()
	ref := refs[0]
	now := time.Now().UTC()
	snap := config.Snapshot{Name: config.SnapshotName(now), Time: now}
	v, err := e.st.BeginIntent(ctx, ref, store.Intent{Op: "snapshot", Snapshot: snap.Name}, e.h)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.ops.snapshotLocked(ctx, ref, v, snap, e.h)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.FinishSnapshot(ctx, ref, m.snap, e.h); err != nil {
		t.Fatal(err)
	}
	if err := e.ops.finishLocked(ctx, m, e.h, nil); err != nil {
		t.Errorf("finish of a recorded snapshot = %v, want done", err)
	}
	made, _ := e.lb.ListSnapshots(ctx, storage.Volume{Policy: ref.Policy, Name: ref.Name})
	if !slices.Equal(made, []string{snap.Name}) {
		t.Fatalf("backend snapshots %v, want the recorded %s kept", made, snap.Name)
	}
}
