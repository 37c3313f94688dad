package volops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
)

// Take snapshots ref now. guard (e.g. leadership) must hold when the lock is
// taken and when the record is written; if it fails at the end, the backend
// snapshot is removed again, so nothing is left without a record.
func (t *Ops) Take(ctx context.Context, ref config.VolumeRef, h store.Holder, guard ...clientv3.Cmp) (config.Snapshot, error) {
	snap, _, err := t.take(ctx, ref, "", 0, h, guard)
	return snap, err
}

// TakeLabelled snapshots ref now under label (config.Snapshot.Label), or
// returns the snapshot of ref that has the label already (made false): a
// repeated request never makes a second one. Labelled snapshots are never
// pruned, so maxLabelled (0: no limit; the policy's max-keep) bounds how
// many one volume holds. Both checks are made under the volume's operation
// lock, so concurrent requests cannot get past them together.
func (t *Ops) TakeLabelled(ctx context.Context, ref config.VolumeRef, label string, maxLabelled uint, h store.Holder) (snap config.Snapshot, made bool, err error) {
	if err := config.ValidateName("snapshot label", label); err != nil {
		return config.Snapshot{}, false, err
	}
	return t.take(ctx, ref, label, maxLabelled, h, nil)
}

func (t *Ops) take(ctx context.Context, ref config.VolumeRef, label string, maxLabelled uint, h store.Holder, guard []clientv3.Cmp) (config.Snapshot, bool, error) {
	now := t.Now().UTC()
	snap := config.Snapshot{Name: config.SnapshotName(now), Time: now, By: t.By, Label: label}
	v, err := t.Store.BeginIntent(ctx, ref, store.Intent{Op: "snapshot", Snapshot: snap.Name}, h, guard...)
	if err != nil {
		return config.Snapshot{}, false, err
	}
	if label != "" {
		snaps, err := t.Store.ListSnapshots(ctx, ref)
		if err != nil {
			t.release(ctx, ref, h)
			return config.Snapshot{}, false, err
		}
		if i := slices.IndexFunc(snaps, func(s config.Snapshot) bool { return s.Label == label }); i >= 0 {
			t.release(ctx, ref, h)
			return snaps[i], false, nil
		}
		labelled := uint(0)
		for _, s := range snaps {
			if s.Label != "" {
				labelled++
			}
		}
		if maxLabelled > 0 && labelled >= maxLabelled {
			t.release(ctx, ref, h)
			return config.Snapshot{}, false, fmt.Errorf("volume %s holds %d labelled snapshots, its policy's limits.max-keep: remove one first: %w", ref, labelled, config.ErrInvalid)
		}
	}
	snap, err = t.takeLocked(ctx, ref, v, snap, h, guard)
	return snap, err == nil, err
}

// takeLocked takes the backend snapshot and records it, ref's operation lock held.
func (t *Ops) takeLocked(ctx context.Context, ref config.VolumeRef, v config.Volume, snap config.Snapshot, h store.Holder, guard []clientv3.Cmp) (config.Snapshot, error) {
	made, err := t.snapshotLocked(ctx, ref, v, snap, h)
	if err != nil {
		return config.Snapshot{}, err
	}
	return made.snap, t.finishLocked(ctx, made, h, guard)
}

// madeSnapshot is a backend snapshot taken under its volume's operation
// lock and not recorded yet.
type madeSnapshot struct {
	ref  config.VolumeRef
	snap config.Snapshot
	b    storage.Snapshotter
	sv   storage.Volume
}

// snapshotLocked takes the backend snapshot, ref's operation lock held; on
// failure it releases the lock.
func (t *Ops) snapshotLocked(ctx context.Context, ref config.VolumeRef, v config.Volume, snap config.Snapshot, h store.Holder) (madeSnapshot, error) {
	b, sv, err := t.backend(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return madeSnapshot{}, err
	}
	var info storage.SnapshotInfo
	err = t.Call(ctx, v.Backends.Snapshot, "snapshot", func(bctx context.Context) (err error) {
		info, err = b.CreateSnapshot(bctx, sv, snap.Name)
		return err
	})
	snap.Method = info.Method
	if info.Frozen > 0 { // rounded up: a freeze, however short, shows
		snap.FrozenMS = int64((info.Frozen + time.Millisecond - 1) / time.Millisecond)
	}
	if err != nil {
		t.release(ctx, ref, h)
		return madeSnapshot{}, fmt.Errorf("snapshot %s: %w", ref, err)
	}
	faultpoint.Hit(ctx, "snapshot.made", ref.String())
	return madeSnapshot{ref: ref, snap: snap, b: b, sv: sv}, nil
}

// finishLocked records a snapshot made under its volume's operation lock
// and releases the lock; if the record cannot be written, the backend
// snapshot is removed again, so nothing is left without a record. A finish
// whose answer was lost may have been written all the same (a timeout after
// etcd committed, or a batched finish that committed): the record is looked
// for first, so a recorded snapshot is never removed from under it.
func (t *Ops) finishLocked(ctx context.Context, m madeSnapshot, h store.Holder, guard []clientv3.Cmp) error {
	err := t.Store.FinishSnapshot(ctx, m.ref, m.snap, h, guard...)
	if err == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if snaps, lerr := t.Store.ListSnapshots(cctx, m.ref); lerr == nil &&
		slices.ContainsFunc(snaps, func(s config.Snapshot) bool { return s.Name == m.snap.Name }) {
		return nil // recorded, its lock released by the same transaction
	}
	if rerr := m.b.RemoveSnapshot(cctx, m.sv, m.snap.Name); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
		err = errors.Join(err, fmt.Errorf("removing the unrecorded snapshot %s: %w", m.snap.Name, rerr))
	}
	t.release(ctx, m.ref, h)
	return err
}

// Taken is one volume's result of TakeMany: the snapshot, or the error;
// Snaps is the volume's snapshot records after it when they came with the
// batch (nil: read them).
type Taken struct {
	Ref   config.VolumeRef
	Snap  config.Snapshot
	Snaps []config.Snapshot
	Err   error
}

// TakeMany snapshots each of refs now, as Take does, with the operation
// locks taken and the records written for up to store.BatchSize volumes in
// one transaction each: a round of scheduled snapshots costs two etcd
// requests a batch instead of two a volume. Where a batch's begin or finish
// is refused as a whole (a volume busy or gone, a lock lost, the guard), its
// volumes go one by one, with Take's answers and rollbacks. Results are in
// the order of refs.
func (t *Ops) TakeMany(ctx context.Context, refs []config.VolumeRef, h store.Holder, guard ...clientv3.Cmp) []Taken {
	out := make([]Taken, 0, len(refs))
	for start := 0; start < len(refs); start += store.BatchSize {
		out = append(out, t.takeBatch(ctx, refs[start:min(start+store.BatchSize, len(refs))], h, guard)...)
		if i := slices.IndexFunc(out, func(r Taken) bool { return errors.Is(r.Err, store.ErrNotLeader) }); i >= 0 {
			// The guard failed: nothing more may be done; say so for the rest.
			for _, ref := range refs[len(out):] {
				out = append(out, Taken{Ref: ref, Err: out[i].Err})
			}
			break
		}
	}
	return out
}

func (t *Ops) takeBatch(ctx context.Context, refs []config.VolumeRef, h store.Holder, guard []clientv3.Cmp) []Taken {
	one := func(ref config.VolumeRef) Taken {
		snap, err := t.Take(ctx, ref, h, guard...)
		return Taken{Ref: ref, Snap: snap, Err: err}
	}
	now := t.Now().UTC()
	snap := config.Snapshot{Name: config.SnapshotName(now), Time: now, By: t.By}
	items := make([]store.RefIntent, len(refs))
	for i, ref := range refs {
		items[i] = store.RefIntent{Ref: ref, Intent: store.Intent{Op: "snapshot", Snapshot: snap.Name}}
	}
	vols, ok, err := t.Store.BeginIntents(ctx, items, h, guard...)
	out := make([]Taken, len(refs))
	if err != nil || !ok {
		for i, ref := range refs {
			if i > 0 && errors.Is(out[i-1].Err, store.ErrNotLeader) {
				out[i] = Taken{Ref: ref, Err: out[i-1].Err}
				continue
			}
			out[i] = one(ref)
		}
		return out
	}
	var made []madeSnapshot
	var at []int
	for i, ref := range refs {
		m, err := t.snapshotLocked(ctx, ref, vols[i], snap, h)
		if err != nil {
			out[i] = Taken{Ref: ref, Err: err}
			continue
		}
		made, at = append(made, m), append(at, i)
	}
	if len(made) == 0 {
		return out
	}
	recs := make([]store.RefSnapshot, len(made))
	for j, m := range made {
		recs[j] = store.RefSnapshot{Ref: m.ref, Snap: m.snap}
	}
	lists, ok, err := t.Store.FinishSnapshots(ctx, recs, h, guard...)
	for j, m := range made {
		i := at[j]
		switch {
		case err == nil && ok:
			out[i] = Taken{Ref: m.ref, Snap: m.snap, Snaps: lists[j]}
		default:
			// One by one, each with its own rollback.
			if ferr := t.finishLocked(ctx, m, h, guard); ferr != nil {
				out[i] = Taken{Ref: m.ref, Err: ferr}
			} else {
				out[i] = Taken{Ref: m.ref, Snap: m.snap}
			}
		}
	}
	return out
}

// Prune removes the snapshots of ref that the retention rules (the newest
// keep, plus the tiers' picks) do not keep, oldest first, and returns their
// names. keep 0 without tiers keeps everything.
func (t *Ops) Prune(ctx context.Context, ref config.VolumeRef, keep uint, tiers config.Tiers, h store.Holder, guard ...clientv3.Cmp) ([]string, error) {
	snaps, err := t.Store.ListSnapshots(ctx, ref)
	if err != nil {
		return nil, err
	}
	return t.pruneFrom(ctx, ref, snaps, keep, tiers, h, guard)
}

// pruneFrom is Prune with ref's snapshot records already read.
func (t *Ops) pruneFrom(ctx context.Context, ref config.VolumeRef, snaps []config.Snapshot, keep uint, tiers config.Tiers, h store.Holder, guard []clientv3.Cmp) ([]string, error) {
	kept := config.Retain(snaps, keep, tiers)
	var removed []string
	for _, s := range snaps {
		if kept[s.Name] {
			continue
		}
		if err := t.remove(ctx, ref, s, h, guard); err != nil {
			return removed, err
		}
		removed = append(removed, s.Name)
	}
	return removed, nil
}

// PruneItem is one volume of PruneMany: its snapshot records (as TakeMany
// returns them) and its retention rules.
type PruneItem struct {
	Ref   config.VolumeRef
	Snaps []config.Snapshot
	Keep  uint
	Tiers config.Tiers
}

// Pruned is one volume's result of PruneMany: the snapshots removed, and
// the error that stopped its prune, if one did.
type Pruned struct {
	Ref     config.VolumeRef
	Removed []string
	Err     error
}

// PruneMany prunes each volume of items as Prune does, from the records
// given (a prune that removes nothing costs no request). The oldest
// removal of each volume (in steady state the only one: a new snapshot
// pushes one out) begins and finishes in batched transactions of up to
// store.BatchSize volumes; further removals, and the volumes of a batch
// refused as a whole, go one by one. A failed guard stops it at once.
func (t *Ops) PruneMany(ctx context.Context, items []PruneItem, h store.Holder, guard ...clientv3.Cmp) []Pruned {
	out := make([]Pruned, len(items))
	rest := make([][]config.Snapshot, len(items))
	var batch []int
	for i, it := range items {
		out[i].Ref = it.Ref
		kept := config.Retain(it.Snaps, it.Keep, it.Tiers)
		for _, s := range it.Snaps {
			if !kept[s.Name] {
				rest[i] = append(rest[i], s)
			}
		}
		if len(rest[i]) > 0 {
			batch = append(batch, i)
		}
	}
	for start := 0; start < len(batch); start += store.BatchSize {
		t.pruneBatch(ctx, items, batch[start:min(start+store.BatchSize, len(batch))], rest, out, h, guard)
		if slices.ContainsFunc(out, func(p Pruned) bool { return errors.Is(p.Err, store.ErrNotLeader) }) {
			return out
		}
	}
	for i := range items {
		for _, s := range rest[i] {
			if out[i].Err != nil {
				break
			}
			if err := t.remove(ctx, items[i].Ref, s, h, guard); err != nil {
				out[i].Err = err
				if errors.Is(err, store.ErrNotLeader) {
					return out
				}
				break
			}
			out[i].Removed = append(out[i].Removed, s.Name)
		}
	}
	return out
}

// pruneBatch removes the oldest snapshot due to go (rest[i][0]) of each
// volume items[i] for i in idx, in two transactions, and drops it from
// rest; where the batch is refused, each goes on its own.
func (t *Ops) pruneBatch(ctx context.Context, items []PruneItem, idx []int, rest [][]config.Snapshot, out []Pruned, h store.Holder, guard []clientv3.Cmp) {
	one := func(i int) {
		s := rest[i][0]
		rest[i] = rest[i][1:]
		if err := t.remove(ctx, items[i].Ref, s, h, guard); err != nil {
			out[i].Err = err
			return
		}
		out[i].Removed = append(out[i].Removed, s.Name)
	}
	begin := make([]store.RefIntent, len(idx))
	for j, i := range idx {
		s := rest[i][0]
		begin[j] = store.RefIntent{Ref: items[i].Ref, Intent: store.Intent{Op: "prune", Snapshot: s.Name, BackendSnapshot: s.Backend}}
	}
	vols, ok, err := t.Store.BeginIntents(ctx, begin, h, guard...)
	if err != nil || !ok {
		for _, i := range idx {
			if slices.ContainsFunc(out, func(p Pruned) bool { return errors.Is(p.Err, store.ErrNotLeader) }) {
				return
			}
			one(i)
		}
		return
	}
	var done []store.RefName
	var at []int
	for j, i := range idx {
		s := rest[i][0]
		rest[i] = rest[i][1:]
		v := vols[j]
		b, sv, err := t.backend(&v)
		if err == nil {
			err = t.Call(ctx, v.Backends.Snapshot, "remove-snapshot", func(bctx context.Context) error {
				return b.RemoveSnapshot(bctx, sv, s.BackendName())
			})
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.release(ctx, items[i].Ref, h)
			out[i].Err = fmt.Errorf("prune snapshot %s of %s: %w", s.Name, items[i].Ref, err)
			continue
		}
		done, at = append(done, store.RefName{Ref: items[i].Ref, Snap: s.Name}), append(at, i)
	}
	if len(done) == 0 {
		return
	}
	ok, err = t.Store.FinishPrunes(ctx, done, h, guard...)
	for j, i := range at {
		if err == nil && ok {
			out[i].Removed = append(out[i].Removed, done[j].Snap)
			continue
		}
		if ferr := t.Store.FinishPrune(ctx, done[j].Ref, done[j].Snap, h, guard...); ferr != nil {
			out[i].Err = ferr
			continue
		}
		out[i].Removed = append(out[i].Removed, done[j].Snap)
	}
}

func (t *Ops) remove(ctx context.Context, ref config.VolumeRef, snap config.Snapshot, h store.Holder, guard []clientv3.Cmp) error {
	name := snap.Name
	v, err := t.Store.BeginIntent(ctx, ref, store.Intent{Op: "prune", Snapshot: name, BackendSnapshot: snap.Backend}, h, guard...)
	if err != nil {
		return err
	}
	b, sv, err := t.backend(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return err
	}
	err = t.Call(ctx, v.Backends.Snapshot, "remove-snapshot", func(bctx context.Context) error {
		return b.RemoveSnapshot(bctx, sv, snap.BackendName())
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.release(ctx, ref, h)
		return fmt.Errorf("prune snapshot %s of %s: %w", name, ref, err)
	}
	return t.Store.FinishPrune(ctx, ref, name, h, guard...)
}

// RemoveSnapshot removes snapshot name of ref (backend and record) under
// the volume's operation lock; config.ErrNotFound if ref has none of that
// name.
func (t *Ops) RemoveSnapshot(ctx context.Context, ref config.VolumeRef, name string, h store.Holder) error {
	snaps, err := t.Store.ListSnapshots(ctx, ref)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(snaps, func(s config.Snapshot) bool { return s.Name == name })
	if i < 0 {
		return fmt.Errorf("volume %s has no snapshot %s: %w", ref, name, config.ErrNotFound)
	}
	return t.remove(ctx, ref, snaps[i], h, nil)
}
