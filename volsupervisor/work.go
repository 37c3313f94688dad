package volsupervisor

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
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
	// failed is when a scheduled snapshot of each volume last failed.
	failed map[config.VolumeRef]time.Time
	// unproven holds the volumes kept as in use until proven unmounted, with
	// their last mount, so each is logged once.
	unproven map[config.VolumeRef]time.Time
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
	ops := &volops.Ops{Store: s.store, Backends: s.cfg.Snapshotters, CRUD: s.cfg.Backends, By: "volsupervisor " + s.cfg.Name, Daemon: "volsupervisor",
		Timeout: g.TimeoutDuration(), Now: s.cfg.Now, Observe: s.metrics.backend.Observe}
	now := s.cfg.Now()
	var lastErr error
	var due []config.DueSnapshot
	scheduled := map[config.VolumeRef]time.Duration{}
	defer func() {
		sched := make(map[config.VolumeRef]snapshotSchedule, len(scheduled))
		for ref, every := range scheduled {
			sched[ref] = snapshotSchedule{every: every, last: w.last[ref], failed: w.failed[ref]}
		}
		s.setSnapshotSchedules(sched)
		// A total order, so an unchanged schedule is an unchanged status
		// (and no status write).
		slices.SortFunc(due, func(a, b config.DueSnapshot) int {
			return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Volume.String(), b.Volume.String()))
		})
		s.update(func(st *config.SupervisorStatus) { st.NextDue = due[:min(len(due), maxDue)] })
	}()
	// The due volumes first, then their snapshots in batches (TakeMany).
	var todo []*config.Volume
	for i := range vols {
		v := &vols[i]
		rt := v.Runtime
		if !rt.Snapshots || rt.Snapshot.Frequency <= 0 || v.Backends.Snapshot == "" {
			continue
		}
		ref := v.Ref()
		scheduled[ref] = rt.Snapshot.Frequency.D()
		last, ok := w.last[ref]
		if !ok {
			last = w.lastSnapshot(ctx, ref)
			w.last[ref] = last
		}
		if now.Sub(last) < rt.Snapshot.Frequency.D() {
			due = append(due, config.DueSnapshot{Volume: ref, At: last.Add(rt.Snapshot.Frequency.D())})
			continue
		}
		todo = append(todo, v)
	}
	refs := make([]config.VolumeRef, len(todo))
	for i, v := range todo {
		refs[i] = v.Ref()
	}
	var prune []volops.PruneItem
	for i, r := range ops.TakeMany(ctx, refs, w.h, w.guard) {
		ref, rt := r.Ref, todo[i].Runtime
		switch err := r.Err; {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // busy (remove, mount op) or gone: next round
		case err != nil:
			s.metrics.snapshots.WithLabelValues("failed").Inc()
			w.failed[ref] = s.cfg.Now()
			lastErr = err
			continue
		}
		snap := r.Snap
		s.metrics.snapshots.WithLabelValues("taken").Inc()
		w.last[ref] = snap.Time
		due = append(due, config.DueSnapshot{Volume: ref, At: snap.Time.Add(rt.Snapshot.Frequency.D())})
		s.update(func(st *config.SupervisorStatus) { st.Taken++ })
		s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).Info("snapshot taken")
		snaps := r.Snaps
		if snaps == nil {
			var err error
			if snaps, err = s.store.ListSnapshots(ctx, ref); err != nil {
				lastErr = err
				continue
			}
		}
		prune = append(prune, volops.PruneItem{Ref: ref, Snaps: snaps, Keep: rt.Snapshot.Keep, Tiers: rt.Snapshot.Tiers})
	}
	var deposed error
	for _, p := range ops.PruneMany(ctx, prune, w.h, w.guard) {
		switch {
		case errors.Is(p.Err, store.ErrNotLeader):
			deposed = p.Err
		case p.Err != nil && !errors.Is(p.Err, config.ErrInUse):
			lastErr = p.Err
		}
		s.metrics.pruned.Add(float64(len(p.Removed)))
		s.update(func(st *config.SupervisorStatus) { st.Pruned += len(p.Removed) })
	}
	if deposed != nil {
		return deposed
	}
	if err := w.collect(ctx, ops, vols, g.TTL); errors.Is(err, store.ErrNotLeader) {
		return err
	} else if err != nil {
		lastErr = err
	}
	if err := w.purgeExpired(ctx, ops); errors.Is(err, store.ErrNotLeader) {
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

// maxUnproven bounds the in-use-until-proven-unmounted list in the status.
const maxUnproven = 100

// collect removes the ephemeral volumes that were mounted once and whose
// last mount has a recorded unmount, and the volumes unused for longer than
// their policy's reclaim.unused-for where reclamation is enabled, once they
// have been without a mount lock for the grace (twice the TTL): the rule is
// config.Decide, checked again by volops.Remove against etcd as it is then.
// A volume with a mount lock, busy with another operation, or whose last
// mount has no recorded unmount (its host died, lost its lease or was cut
// off) is never touched; the last kind is logged once and listed in the
// status until an operator records the unmount (volcli use force-remove).
func (w *worker) collect(ctx context.Context, ops *volops.Ops, vols []config.Volume, ttl int64) error {
	s := w.s
	if !slices.ContainsFunc(vols, func(v config.Volume) bool { return v.Ephemeral || v.Reclaim.Enabled }) {
		w.reportUnproven(nil)
		return nil
	}
	usage, locked, err := ops.Usage(ctx)
	if err != nil {
		return err
	}
	grace := config.RemovalGrace(ttl)
	now := s.cfg.Now()
	var doomed []config.VolumeRef
	var unproven []unprovenVolume
	for i := range vols {
		v := &vols[i]
		if !v.Ephemeral && !v.Reclaim.Enabled {
			continue
		}
		ref := v.Ref()
		var u *config.Usage
		if us, ok := usage[ref]; ok {
			u = &us
		}
		vd := config.Decide(v, u, locked[ref], grace, now)
		switch {
		case vd.Remove:
			doomed = append(doomed, ref)
		case vd.State == config.StateUnproven && (v.Ephemeral || vd.Reclaimable):
			unproven = append(unproven, unprovenVolume{config.Unproven{Volume: ref, Host: vd.Host, LastMounted: vd.LastMounted}, vd.Reason})
		}
	}
	w.reportUnproven(unproven)
	check := volops.Collect(grace)
	var lastErr error
	for _, ref := range doomed {
		_, err := ops.Remove(ctx, ref, check, w.h, w.guard)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return err
		case errors.Is(err, config.ErrInUse), errors.Is(err, config.ErrNotFound):
			continue // mounted or unmounted meanwhile, busy or gone
		case err != nil:
			lastErr = err
			continue
		}
		s.metrics.removed.Inc()
		s.update(func(st *config.SupervisorStatus) { st.Removed++ })
		s.log.WithField("volume", ref.String()).Info("volume removed: ephemeral or unused past its reclaim period, " +
			"and unmounted with no mount lock for twice the TTL")
	}
	return lastErr
}

// purgeExpired purges the trash entries whose retention has passed, each
// image first and then its entry, every change guarded by leadership.
func (w *worker) purgeExpired(ctx context.Context, ops *volops.Ops) error {
	purged, err := ops.PurgeExpired(ctx, w.guard)
	for _, tref := range purged {
		w.s.log.WithField("volume", tref.Volume.String()).WithField("trash-id", tref.ID).Info("trash entry purged: retention over")
	}
	if n := len(purged); n > 0 {
		w.s.update(func(st *config.SupervisorStatus) { st.Purged += n })
	}
	return err
}

type unprovenVolume struct {
	config.Unproven
	reason string
}

// reportUnproven logs each volume newly kept as in use until proven
// unmounted (once per leadership term and last mount, not every round) and
// lists them in the status.
func (w *worker) reportUnproven(vols []unprovenVolume) {
	seen := make(map[config.VolumeRef]time.Time, len(vols))
	list := make([]config.Unproven, 0, len(vols))
	for _, u := range vols {
		seen[u.Volume] = u.LastMounted
		list = append(list, u.Unproven)
		if last, ok := w.unproven[u.Volume]; ok && last.Equal(u.LastMounted) {
			continue
		}
		w.s.log.WithFields(map[string]any{"volume": u.Volume.String(), "host": u.Host, "last-mounted": u.LastMounted}).
			Warn("volume kept: " + u.reason)
	}
	w.unproven = seen
	slices.SortFunc(list, func(a, b config.Unproven) int { return strings.Compare(a.Volume.String(), b.Volume.String()) })
	list = list[:min(len(list), maxUnproven)]
	if len(list) == 0 {
		list = nil
	}
	w.s.update(func(st *config.SupervisorStatus) {
		if !slices.Equal(st.Unproven, list) {
			st.Unproven = list
		}
	})
}
