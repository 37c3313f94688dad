package volplugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
)

// Mount maps and mounts the volume for one Docker mount ID, taking the
// host's lock on it first. Mounts are counted by ID: the same ID twice (docker
// cp) counts once; the device stays mounted until the last ID is unmounted.
func (d *Driver) Mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	start := time.Now()
	resp, err := d.mount(req)
	if failsHealth(err) {
		d.health.mountFailed()
	}
	d.metrics.mounts.WithLabelValues(result(err)).Inc()
	d.metrics.mountTime.Observe(since(start))
	return resp, err
}

func (d *Driver) mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	ref, err := parseName(req.Name)
	if err != nil {
		return nil, err
	}
	if req.ID == "" {
		return nil, errors.New("mount request without an ID")
	}
	unlock := d.vlock.Hold(ref.Policy, ref.Name)
	defer unlock()
	ctx, cancel := d.ctx()
	defer cancel()
	log := d.log.WithFields(logrus.Fields{"volume": ref.String(), "id": req.ID})

	d.mu.Lock()
	m := d.mounts[ref]
	d.mu.Unlock()
	if m == nil && d.cfg.Maintenance {
		d.metrics.refused.WithLabelValues(refusedMaintenance).Inc()
		return nil, fmt.Errorf("host %s is in maintenance mode: new mounts are refused: %w", d.cfg.Host, errRefused)
	}
	if m == nil {
		if err := d.health.refuse(); err != nil {
			d.metrics.refused.WithLabelValues(refusedHealth).Inc()
			return nil, err
		}
	}
	if m != nil {
		return d.mountAgain(ctx, ref, m, req.ID, log)
	}

	v, err := d.cfg.API.Volume(ctx, ref)
	if err != nil {
		return nil, err
	}
	mounter, err := d.mounter(&v)
	if err != nil {
		return nil, err
	}
	sv, err := storage.FromConfig(&v)
	if err != nil {
		return nil, err
	}
	var lease int64
	if !v.Unlocked {
		faultpoint.Hit(context.WithoutCancel(ctx), "mount.before-lock", ref.String())
		if lease, err = d.acquire(ctx, ref, req.ID); err != nil {
			return nil, err
		}
		// Read again under the lock: a resize may have finished between
		// the first read and the lock (while one runs, the lock is refused).
		if v, err = d.cfg.API.Volume(ctx, ref); err == nil {
			sv, err = storage.FromConfig(&v)
		}
		if err != nil {
			d.release(ctx, ref, req.ID)
			return nil, err
		}
		faultpoint.Hit(context.WithoutCancel(ctx), "mount.locked", ref.String())
	}
	mnt, err := d.backendMount(ctx, &v, mounter, sv)
	if err != nil && !v.Unlocked && errors.Is(err, storage.ErrInUse) {
		// This host holds the volume's mount lock, so the previous holder's
		// lease is gone: it is dead (or cut off) and must be fenced before
		// this host writes. Backends that can fence (Ceph) break its lock.
		if b, ok := mounter.(lockBreaker); ok {
			log.WithError(err).Warn("fencing the volume's previous holder")
			start := time.Now()
			berr := b.BreakLock(ctx, sv, "volplugin on "+d.cfg.Host+" holds the mount lock")
			d.metrics.backend.Observe(v.Backends.Mount, "break-lock", start, berr)
			if berr == nil {
				mnt, err = d.backendMount(ctx, &v, mounter, sv)
			} else {
				err = errors.Join(err, berr)
			}
		}
	}
	if err != nil {
		if !v.Unlocked {
			d.release(ctx, ref, req.ID)
		}
		return nil, fmt.Errorf("mount %s: %w", ref, err)
	}
	d.markFormatted(ctx, &v, sv, log)
	d.mu.Lock()
	d.mounts[ref] = &mounted{vol: v, path: mnt.Path, device: mnt.Device, ids: map[string]bool{req.ID: true}, grownTo: v.Create.Size, lockLease: lease}
	d.mu.Unlock()
	d.saveState(log)
	d.noteMounts()
	d.applyLimits(ref, mnt.Device, v.Runtime)
	log.WithField("path", mnt.Path).WithField("device", mnt.Device).Info("mounted")
	return &volume.MountResponse{Mountpoint: mnt.Path}, nil
}

// Unmount drops one mount ID; the last one unmounts, unmaps and releases the
// lock. An ID this host does not hold (e.g. after a failed Mount) changes
// nothing else, so it cannot unmount a volume another container uses.
func (d *Driver) Unmount(req *volume.UnmountRequest) error {
	start := time.Now()
	err := d.unmount(req)
	d.metrics.unmounts.WithLabelValues(result(err)).Inc()
	d.metrics.unmountTime.Observe(since(start))
	return err
}

func (d *Driver) unmount(req *volume.UnmountRequest) error {
	ref, err := parseName(req.Name)
	if err != nil {
		return err
	}
	unlock := d.vlock.Hold(ref.Policy, ref.Name)
	defer unlock()
	log := d.log.WithFields(logrus.Fields{"volume": ref.String(), "id": req.ID})

	d.mu.Lock()
	m := d.mounts[ref]
	held := m != nil && m.ids[req.ID]
	if m != nil && !held && m.ids[recoveredID] {
		// A mount adopted after a restart, its Docker IDs unknown.
		held, req.ID = true, recoveredID
	}
	if held {
		delete(m.ids, req.ID)
	}
	last := held && len(m.ids) == 0
	d.mu.Unlock()
	if !held {
		log.Warn("unmount of a mount ID this host does not hold: nothing to do")
		return nil
	}
	ctx, cancel := d.ctx()
	defer cancel()
	if !last {
		d.saveState(log)
		if !m.vol.Unlocked {
			d.release(ctx, ref, req.ID)
		}
		log.Info("unmounted one reference; still in use")
		return nil
	}
	if err := d.unmountDevice(ctx, m); err != nil {
		d.mu.Lock()
		m.ids[req.ID] = true
		d.mu.Unlock()
		return err
	}
	d.mu.Lock()
	delete(d.mounts, ref)
	d.mu.Unlock()
	d.saveState(log)
	d.noteMounts()
	d.dropLimits(ref)
	if !m.vol.Unlocked {
		d.release(ctx, ref, req.ID)
	}
	log.Info("unmounted")
	return nil
}

// saveState saves the state file before Docker gets its answer. A failure
// is logged, not returned: the mount or unmount has happened, and a restart
// falls back to the mount table and the lock's IDs.
func (d *Driver) saveState(log logrus.FieldLogger) {
	if err := d.persist(); err != nil {
		log.WithError(err).Error("saving volplugin state: mount counts may not survive a restart")
	}
}

// mountAgain counts one more Docker mount of a volume mounted here: it
// never waits on an operation on the volume, and it works while volmaster
// is away (the keeper adds the ID to the lock later). Only a lock another
// host holds refuses it.
func (d *Driver) mountAgain(ctx context.Context, ref config.VolumeRef, m *mounted, id string, log logrus.FieldLogger) (*volume.MountResponse, error) {
	d.mu.Lock()
	lost, known := m.lost, m.ids[id]
	d.mu.Unlock()
	if lost != "" {
		return nil, fmt.Errorf("volume %s is mounted on host %s but this host lost its lock (%s): no new container may use it: %w", ref, d.cfg.Host, lost, config.ErrInUse)
	}
	if !known && !m.vol.Unlocked {
		if lease := d.lease.current(); lease != 0 {
			_, err := d.cfg.API.AcquireUse(ctx, ref, d.mountRequest(lease, id))
			if err != nil {
				if why := d.lockLost(ctx, ref, err); why != "" {
					return nil, fmt.Errorf("lock %s: %w", ref, err)
				}
				log.WithError(err).Warn("mount ID not yet in the lock; the lock keeper adds it")
				d.mu.Lock()
				m.lockLease = 0
				d.mu.Unlock()
				d.kick()
			}
		} else {
			d.mu.Lock()
			m.lockLease = 0
			d.mu.Unlock()
			d.kick()
		}
	}
	d.mu.Lock()
	m.ids[id] = true
	d.mu.Unlock()
	d.saveState(log)
	log.Info("mounted again (reference counted)")
	return &volume.MountResponse{Mountpoint: m.path}, nil
}

func (d *Driver) unmountDevice(ctx context.Context, m *mounted) error {
	mounter, err := d.mounter(&m.vol)
	if err != nil {
		return err
	}
	sv, err := storage.FromConfig(&m.vol)
	if err != nil {
		return err
	}
	sv.MountedAt = m.path
	start := time.Now()
	err = mounter.Unmount(ctx, sv)
	d.metrics.backend.Observe(m.vol.Backends.Mount, "unmount", start, err)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", m.vol.Ref(), err)
	}
	return nil
}

// backendMount maps and mounts sv, timing the call.
func (d *Driver) backendMount(ctx context.Context, v *config.Volume, mounter storage.Mounter, sv storage.Volume) (storage.Mount, error) {
	start := time.Now()
	mnt, err := mounter.Mount(ctx, sv)
	d.metrics.backend.Observe(v.Backends.Mount, "mount", start, err)
	return mnt, err
}
