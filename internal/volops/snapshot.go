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
	b, sv, err := t.backend(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return config.Snapshot{}, err
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
		return config.Snapshot{}, fmt.Errorf("snapshot %s: %w", ref, err)
	}
	faultpoint.Hit(ctx, "snapshot.made", ref.String())
	if err := t.Store.FinishSnapshot(ctx, ref, snap, h, guard...); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rerr := b.RemoveSnapshot(cctx, sv, snap.Name); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("removing the unrecorded snapshot %s: %w", snap.Name, rerr))
		}
		t.release(ctx, ref, h)
		return config.Snapshot{}, err
	}
	return snap, nil
}

// Prune removes the snapshots of ref that the retention rules (the newest
// keep, plus the tiers' picks) do not keep, oldest first, and returns their
// names. keep 0 without tiers keeps everything.
func (t *Ops) Prune(ctx context.Context, ref config.VolumeRef, keep uint, tiers config.Tiers, h store.Holder, guard ...clientv3.Cmp) ([]string, error) {
	snaps, err := t.Store.ListSnapshots(ctx, ref)
	if err != nil {
		return nil, err
	}
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
