package volplugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/volplugin/volplugin/config"
)

// keeperRetry bounds the wait between two passes of the lock keeper while
// something is left to do; keeperIdle is its pass when nothing is known to
// be left (a safety net: every change kicks it).
const (
	keeperRetryMin = 200 * time.Millisecond
	keeperRetryMax = 5 * time.Second
	keeperIdle     = 30 * time.Second
)

// kick asks the lock keeper for a pass now.
func (d *Driver) kick() {
	select {
	case d.keeperKick <- struct{}{}:
	default:
	}
}

// onNewLease is the host lease's onNew: every lock must move onto the new
// lease. The keeper does it, so the lease's renewals never wait on volmaster
// answers about single volumes. The lease's loss is watched from now on.
func (d *Driver) onNewLease(ctx context.Context, id int64) {
	go d.watchLease(ctx, id)
	d.kick()
}

// watchLease acts on the loss of lease id when it happens: the locks on it
// are gone from etcd, so until the keeper puts them on the next lease
// another host could take a volume this host has mounted. It is said at
// once (log, volplugin_leases_lost_total), the mounts no longer count as
// locked, and the keeper starts over.
func (d *Driver) watchLease(ctx context.Context, id int64) {
	select {
	case <-ctx.Done():
		return
	case <-d.lease.Lost(id):
	}
	if ctx.Err() != nil {
		return
	}
	d.metrics.leasesLost.Inc()
	d.mu.Lock()
	held := 0
	for _, m := range d.mounts {
		if m.lockLease == id {
			m.lockLease = 0
			held++
		}
	}
	d.mu.Unlock()
	d.log.WithField("lease", id).WithField("locks", held).
		Error("host lease lost: its mount locks are gone from etcd until they are taken again on a new lease; new mounts wait for it")
	d.kick()
}

// keepLocks runs until ctx ends. It puts the lock of every locked volume
// mounted here (and each of its mount IDs) on the current lease, and retries
// releases volmaster did not acknowledge. Anything but another host holding
// the lock is retried with backoff until it succeeds: a busy volume, a
// volmaster that is down or slow, an expired lease. Only a lock that another
// host holds is reported lost.
func (d *Driver) keepLocks(ctx context.Context) {
	retry := keeperRetryMin
	for {
		wait := keeperIdle
		if !d.syncLocks(ctx) {
			wait, retry = retry, min(retry*2, keeperRetryMax)
		} else {
			retry = keeperRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.keeperKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// syncLocks makes one pass and reports whether nothing is left to do.
func (d *Driver) syncLocks(ctx context.Context) bool {
	done := d.retryReleases(ctx)
	lease := d.lease.current()
	d.mu.Lock()
	var refs []config.VolumeRef
	for ref, m := range d.mounts {
		if !m.vol.Unlocked && (m.lockLease != lease || lease == 0) {
			refs = append(refs, ref)
		}
	}
	d.mu.Unlock()
	if len(refs) == 0 {
		return done
	}
	if lease == 0 {
		return false // the host lease loop kicks again once it has one
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
	for _, ref := range refs {
		if !d.syncLock(ctx, ref, lease) {
			done = false
		}
	}
	return done
}

// syncLock puts ref's lock with all its mount IDs on lease.
func (d *Driver) syncLock(ctx context.Context, ref config.VolumeRef, lease int64) bool {
	unlock := d.vlock.Hold(ref.Policy, ref.Name)
	defer unlock()
	d.mu.Lock()
	m := d.mounts[ref]
	var ids []string
	if m != nil {
		for id := range m.ids {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	if m == nil || m.lockLease == lease {
		return true
	}
	sort.Strings(ids)
	log := d.log.WithField("volume", ref.String())
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, d.opTimeout())
		_, err := d.cfg.API.AcquireUse(cctx, ref, d.mountRequest(lease, id))
		cancel()
		if err == nil {
			continue
		}
		if lost := d.lockLost(ctx, ref, err); lost != "" {
			d.mu.Lock()
			first := m.lost == ""
			m.lost = lost
			d.mu.Unlock()
			if first {
				d.metrics.locksLost.Inc()
				log.WithError(err).WithField("reason", lost).
					Error("LOCK LOST: another host holds this volume's lock; this host must not write to it")
			}
		} else {
			log.WithError(err).Warn("cannot renew this volume's lock yet; retrying")
		}
		return false
	}
	d.mu.Lock()
	was := m.lost
	m.lockLease, m.lost = lease, ""
	d.mu.Unlock()
	if was != "" {
		log.Warn("lock held again by this host")
	}
	return true
}

// lockLost tells whether a failed acquire means another host holds the
// lock (or the volume is gone), and says which; "" for anything that a
// retry may fix.
func (d *Driver) lockLost(ctx context.Context, ref config.VolumeRef, err error) string {
	if !errors.Is(err, config.ErrInUse) && !errors.Is(err, config.ErrNotFound) || errors.Is(err, config.ErrBusy) {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, d.opTimeout())
	defer cancel()
	if errors.Is(err, config.ErrNotFound) {
		// Also what an expired lease answers: only a missing record counts.
		if _, verr := d.cfg.API.Volume(cctx, ref); errors.Is(verr, config.ErrNotFound) {
			return "volume record removed"
		}
		return ""
	}
	u, uerr := d.cfg.API.Use(cctx, ref)
	if uerr == nil && !d.ownLock(u) {
		return "locked by " + u.Owner()
	}
	return ""
}

// release drops one mount ID from the lock. One that volmaster does not
// acknowledge is queued (and saved) and retried by the keeper until it
// succeeds, so that a volume is not "mounted" forever on a host that
// unmounted it while volmaster was away.
func (d *Driver) release(ctx context.Context, ref config.VolumeRef, id string) {
	cctx, cancel := context.WithTimeout(ctx, d.opTimeout())
	_, err := d.cfg.API.ReleaseUse(cctx, ref, d.mountRequest(0, id))
	cancel()
	if releaseDone(err) {
		return
	}
	d.log.WithError(err).WithField("volume", ref.String()).Warn("releasing mount lock; retrying in the background")
	d.mu.Lock()
	r := pendingRelease{Volume: ref, MountID: id}
	if !slices.Contains(d.releases, r) {
		d.releases = append(d.releases, r)
	}
	d.mu.Unlock()
	d.kick()
}

// releaseDone tells whether a release needs no retry: it succeeded, the
// volume is gone, or another host holds the lock (ours went with our lease).
func releaseDone(err error) bool {
	return err == nil || errors.Is(err, config.ErrNotFound) ||
		(errors.Is(err, config.ErrInUse) && !errors.Is(err, config.ErrBusy))
}

// retryReleases retries the queued releases and reports whether none is left.
func (d *Driver) retryReleases(ctx context.Context) bool {
	d.mu.Lock()
	todo := slices.Clone(d.releases)
	d.mu.Unlock()
	if len(todo) == 0 {
		return true
	}
	var left []pendingRelease
	for _, r := range todo {
		unlock := d.vlock.Hold(r.Volume.Policy, r.Volume.Name)
		d.mu.Lock()
		// Mounted again here meanwhile with the same ID: not ours to drop.
		m := d.mounts[r.Volume]
		remounted := m != nil && m.ids[r.MountID]
		d.mu.Unlock()
		var err error
		if !remounted {
			cctx, cancel := context.WithTimeout(ctx, d.opTimeout())
			_, err = d.cfg.API.ReleaseUse(cctx, r.Volume, d.mountRequest(0, r.MountID))
			cancel()
		}
		unlock()
		if !releaseDone(err) {
			left = append(left, r)
		} else if !remounted {
			d.log.WithField("volume", r.Volume.String()).WithField("id", r.MountID).Info("queued lock release done")
		}
	}
	d.mu.Lock()
	// Keep what was queued during this pass.
	d.releases = append(left, d.releases[len(todo):]...)
	rest := len(d.releases)
	d.mu.Unlock()
	if err := d.persist(); err != nil {
		d.log.WithError(err).Error("saving volplugin state")
	}
	return rest == 0
}

// busyWait bounds how long a first mount waits for an operation on the
// volume (a snapshot, say) to finish before it gives up.
const busyWait = 10 * time.Second

// acquire takes the host's lock on ref for one mount ID and returns the
// lease it is on. A volume busy with an operation is retried for up to
// busyWait.
func (d *Driver) acquire(ctx context.Context, ref config.VolumeRef, id string) (int64, error) {
	deadline := time.Now().Add(busyWait)
	wait := 50 * time.Millisecond
	for {
		lease, err := d.lease.ID(ctx)
		if err != nil {
			return 0, err
		}
		_, err = d.cfg.API.AcquireUse(ctx, ref, d.mountRequest(lease, id))
		d.metrics.locks.WithLabelValues(result(err)).Inc()
		if err == nil {
			return lease, nil
		}
		if !errors.Is(err, config.ErrBusy) || time.Now().Add(wait).After(deadline) {
			return 0, fmt.Errorf("lock %s: %w", ref, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("lock %s: %w", ref, err)
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}

// mountRequest asks for (or releases) mount ID id of this daemon on lease.
func (d *Driver) mountRequest(lease int64, id string) config.MountRequest {
	return config.MountRequest{Hostname: d.cfg.Host, Holder: d.cfg.Holder, Lease: lease, MountID: id}
}

// ownLock tells whether a lock is this daemon's.
func (d *Driver) ownLock(u config.Use) bool { return u.HeldBy(d.cfg.Host, d.cfg.Holder) }
