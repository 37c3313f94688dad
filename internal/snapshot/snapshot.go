// Package snapshot takes and prunes volume snapshots under the volume's
// operation lock: the one code path that volmaster (on-demand snapshots) and
// volsupervisor (scheduled snapshots, pruning) share. A snapshot and a
// remove of the same volume never overlap: both need the operation lock.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// cleanupTimeout bounds the undoing of a half-done operation.
const cleanupTimeout = time.Minute

// Taker takes and prunes snapshots.
type Taker struct {
	Store *store.Store
	// Backends maps a backend name to its Snapshotter.
	Backends map[string]storage.Snapshotter
	// By names the taker in snapshot records.
	By string
	// Timeout bounds each backend call.
	Timeout time.Duration
	Now     func() time.Time
}

func (t *Taker) backend(v *config.Volume) (storage.Snapshotter, storage.Volume, error) {
	if v.Backends.Snapshot == "" {
		return nil, storage.Volume{}, fmt.Errorf("volume %s: backend %s cannot take snapshots: %w", v.Ref(), v.Backends.Mount, config.ErrInvalid)
	}
	b, ok := t.Backends[v.Backends.Snapshot]
	if !ok {
		return nil, storage.Volume{}, fmt.Errorf("snapshot backend %s is not configured here: %w", v.Backends.Snapshot, config.ErrUnavailable)
	}
	sv, err := storage.FromConfig(v)
	return b, sv, err
}

func (t *Taker) release(ctx context.Context, ref config.VolumeRef, h store.Holder) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = t.Store.ReleaseOp(cctx, ref, h)
}

// Take snapshots ref now. guard (e.g. leadership) must hold when the lock is
// taken and when the record is written; if it fails at the end, the backend
// snapshot is removed again, so nothing is left without a record.
func (t *Taker) Take(ctx context.Context, ref config.VolumeRef, h store.Holder, guard ...clientv3.Cmp) (config.Snapshot, error) {
	v, err := t.Store.BeginOp(ctx, ref, "snapshot", h, false, guard...)
	if err != nil {
		return config.Snapshot{}, err
	}
	b, sv, err := t.backend(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return config.Snapshot{}, err
	}
	now := t.Now().UTC()
	snap := config.Snapshot{Name: config.SnapshotName(now), Time: now, By: t.By}
	bctx, cancel := context.WithTimeout(ctx, t.Timeout)
	err = b.CreateSnapshot(bctx, sv, snap.Name)
	cancel()
	if err != nil {
		t.release(ctx, ref, h)
		return config.Snapshot{}, fmt.Errorf("snapshot %s: %w", ref, err)
	}
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

// Prune removes the oldest snapshots of ref beyond the newest keep, and
// returns the names removed. keep 0 keeps everything.
func (t *Taker) Prune(ctx context.Context, ref config.VolumeRef, keep uint, h store.Holder, guard ...clientv3.Cmp) ([]string, error) {
	if keep == 0 {
		return nil, nil
	}
	snaps, err := t.Store.ListSnapshots(ctx, ref)
	if err != nil {
		return nil, err
	}
	var removed []string
	for len(snaps) > int(keep) {
		old := snaps[0]
		if err := t.remove(ctx, ref, old.Name, h, guard); err != nil {
			return removed, err
		}
		removed = append(removed, old.Name)
		snaps = snaps[1:]
	}
	return removed, nil
}

func (t *Taker) remove(ctx context.Context, ref config.VolumeRef, name string, h store.Holder, guard []clientv3.Cmp) error {
	v, err := t.Store.BeginOp(ctx, ref, "prune", h, false, guard...)
	if err != nil {
		return err
	}
	b, sv, err := t.backend(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, t.Timeout)
	err = b.RemoveSnapshot(bctx, sv, name)
	cancel()
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.release(ctx, ref, h)
		return fmt.Errorf("prune snapshot %s of %s: %w", name, ref, err)
	}
	return t.Store.FinishPrune(ctx, ref, name, h, guard...)
}
