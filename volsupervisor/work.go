package volsupervisor

import (
	"cmp"
	"context"
	"errors"
	"slices"
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
		s.update(func(st *config.SupervisorStatus) { st.LastError = err.Error() })
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
	var due []config.DueSnapshot
	defer func() {
		// A total order, so an unchanged schedule is an unchanged status
		// (and no status write).
		slices.SortFunc(due, func(a, b config.DueSnapshot) int {
			return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Volume.String(), b.Volume.String()))
		})
		s.update(func(st *config.SupervisorStatus) { st.NextDue = due[:min(len(due), maxDue)] })
	}()
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
			due = append(due, config.DueSnapshot{Volume: ref, At: last.Add(rt.Snapshot.Frequency.D())})
			continue
		}
		snap, err := taker.Take(ctx, ref, w.h, w.guard)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // busy (remove, mount op) or gone: next round
		case err != nil:
			s.metrics.snapshots.WithLabelValues("failed").Inc()
			lastErr = err
			continue
		}
		s.metrics.snapshots.WithLabelValues("taken").Inc()
		w.last[ref] = snap.Time
		due = append(due, config.DueSnapshot{Volume: ref, At: snap.Time.Add(rt.Snapshot.Frequency.D())})
		s.update(func(st *config.SupervisorStatus) { st.Taken++ })
		s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).Info("snapshot taken")
		removed, err := taker.Prune(ctx, ref, rt.Snapshot.Keep, rt.Snapshot.Tiers, w.h, w.guard)
		if errors.Is(err, store.ErrNotLeader) {
			return err
		}
		if err != nil && !errors.Is(err, config.ErrInUse) {
			lastErr = err
		}
		s.metrics.pruned.Add(float64(len(removed)))
		s.update(func(st *config.SupervisorStatus) { st.Pruned += len(removed) })
	}
	if err := w.collect(ctx, taker, vols); errors.Is(err, store.ErrNotLeader) {
		return err
	} else if err != nil {
		lastErr = err
	}
	s.update(func(st *config.SupervisorStatus) {
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

// maxDue bounds the next-due list in the status.
const maxDue = 10

// collect removes ephemeral volumes that were mounted once and are mounted
// nowhere now (unmounted by their last container, or left behind by a host
// whose lease expired), and volumes unused for longer than their policy's
// reclaim.unused-for where reclamation is enabled. A volume with a mount
// lock, or busy with another operation, is never touched; an ephemeral one
// never mounted yet is kept.
func (w *worker) collect(ctx context.Context, ops *volops.Ops, vols []config.Volume) error {
	s := w.s
	if !slices.ContainsFunc(vols, func(v config.Volume) bool { return v.Ephemeral || v.Reclaim.Enabled }) {
		return nil
	}
	usage, err := s.store.Usages(ctx)
	if err != nil {
		return err
	}
	uses, err := s.store.ListUses(ctx)
	if err != nil {
		return err
	}
	locked := make(map[config.VolumeRef]bool, len(uses))
	for _, u := range uses {
		locked[u.Volume] = true
	}
	var doomed []config.VolumeRef
	for i := range vols {
		ref := vols[i].Ref()
		if _, used := usage[ref]; vols[i].Ephemeral && used && !locked[ref] {
			doomed = append(doomed, ref)
		}
	}
	for _, r := range config.FindReclaimable(vols, usage, locked, s.cfg.Now()) {
		if r.WillRemove && !slices.Contains(doomed, r.Volume) {
			doomed = append(doomed, r.Volume)
		}
	}
	var lastErr error
	for _, ref := range doomed {
		_, err := ops.Remove(ctx, ref, w.h, w.guard)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // mounted meanwhile, busy or gone
		case err != nil:
			lastErr = err
			continue
		}
		s.metrics.removed.Inc()
		s.update(func(st *config.SupervisorStatus) { st.Removed++ })
		s.log.WithField("volume", ref.String()).Info("volume removed: ephemeral and unmounted, or unused past its reclaim period")
	}
	return lastErr
}
