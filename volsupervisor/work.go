package volsupervisor

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/volops"
)

// worker does the leader's rounds during one term.
type worker struct {
	s     *Supervisor
	h     store.Holder
	guard clientv3.Cmp
	// last is when each volume was last snapshotted, read from etcd the
	// first time the volume is seen in this term and updated as we go.
	last map[config.VolumeRef]time.Time
}

// round takes every due snapshot and prunes beyond keep. It returns
// store.ErrNotLeader as soon as a guarded change is refused; other errors
// are recorded and the round goes on.
func (w *worker) round(ctx context.Context) error {
	s := w.s
	vols, err := s.cache.Volumes("")
	if err != nil {
		s.update(func(st *Status) { st.LastError = err.Error() })
		return err
	}
	g, err := s.store.GetGlobal(ctx)
	if err != nil {
		return err
	}
	taker := &volops.Ops{Store: s.store, Backends: s.cfg.Snapshotters, CRUD: s.cfg.Backends, By: "volsupervisor " + s.cfg.Name,
		Timeout: g.TimeoutDuration(), Now: s.cfg.Now}
	now := s.cfg.Now()
	var lastErr error
	for i := range vols {
		v := &vols[i]
		rt := v.Runtime
		if !rt.Snapshots || rt.Snapshot.Frequency <= 0 || v.Backends.Snapshot == "" {
			continue
		}
		ref := v.Ref()
		last, ok := w.last[ref]
		if !ok {
			last = w.lastSnapshot(ctx, ref)
			w.last[ref] = last
		}
		if now.Sub(last) < rt.Snapshot.Frequency.D() {
			continue
		}
		snap, err := taker.Take(ctx, ref, w.h, w.guard)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // busy (remove, mount op) or gone: next round
		case err != nil:
			lastErr = err
			continue
		}
		w.last[ref] = snap.Time
		s.update(func(st *Status) { st.Taken++ })
		s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).Info("snapshot taken")
		removed, err := taker.Prune(ctx, ref, rt.Snapshot.Keep, rt.Snapshot.Tiers, w.h, w.guard)
		if errors.Is(err, store.ErrNotLeader) {
			return err
		}
		if err != nil && !errors.Is(err, config.ErrInUse) {
			lastErr = err
		}
		s.update(func(st *Status) { st.Pruned += len(removed) })
	}
	if err := w.collect(ctx, taker, vols); errors.Is(err, store.ErrNotLeader) {
		return err
	} else if err != nil {
		lastErr = err
	}
	s.update(func(st *Status) {
		st.LastRun = now
		if lastErr != nil {
			st.LastError = lastErr.Error()
		}
	})
	return nil
}

func (w *worker) lastSnapshot(ctx context.Context, ref config.VolumeRef) time.Time {
	snaps, err := w.s.store.ListSnapshots(ctx, ref)
	if err != nil || len(snaps) == 0 {
		return time.Time{}
	}
	return snaps[len(snaps)-1].Time
}

// collect removes ephemeral volumes that were mounted once and are mounted
// nowhere now: unmounted by their last container, or left behind by a host
// whose lease expired. A volume with a mount lock (or busy with another
// operation) is never touched; one never mounted yet is kept.
func (w *worker) collect(ctx context.Context, ops *volops.Ops, vols []config.Volume) error {
	s := w.s
	var candidates []config.VolumeRef
	for i := range vols {
		if vols[i].Ephemeral {
			candidates = append(candidates, vols[i].Ref())
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	usage, err := s.store.Usages(ctx)
	if err != nil {
		return err
	}
	var lastErr error
	for _, ref := range candidates {
		if _, used := usage[ref]; !used {
			continue
		}
		err := ops.Remove(ctx, ref, w.h, w.guard)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // mounted, busy or gone
		case err != nil:
			lastErr = err
			continue
		}
		s.update(func(st *Status) { st.Removed++ })
		s.log.WithField("volume", ref.String()).Info("ephemeral volume removed: no longer mounted anywhere")
	}
	return lastErr
}
