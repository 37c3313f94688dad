package volplugin

import (
	"context"
	"errors"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// recoveredID stands for Docker mount IDs that were lost with a restart
// (the lock in etcd had expired too). Docker's next Unmount of the volume,
// whatever its ID, consumes it.
const recoveredID = "recovered"

// Recover re-adopts what is still mounted on this host after a restart and
// drops locks this host holds for volumes it no longer has mounted (a mount
// cut short by a crash). The locks of adopted mounts move to the new lease
// when it is granted.
func (d *Driver) Recover(ctx context.Context) error {
	seen := map[storage.Mounter]bool{}
	for _, mounter := range d.cfg.Mounters {
		if seen[mounter] {
			continue
		}
		seen[mounter] = true
		mounts, err := mounter.Mounted(ctx)
		if err != nil {
			return err
		}
		for _, mnt := range mounts {
			d.adopt(ctx, mnt)
		}
	}
	uses, err := d.cfg.API.Uses(ctx)
	if err != nil {
		return err
	}
	for _, u := range uses {
		if u.Hostname != d.cfg.Host || d.mountpoint(u.Volume) != "" {
			continue
		}
		d.undoHalfMount(ctx, u.Volume)
		for _, id := range u.MountIDs {
			d.release(u.Volume, id)
		}
		d.log.WithField("volume", u.Volume.String()).Warn("cleaned up a mount that did not complete before a restart")
	}
	return nil
}

// undoHalfMount detaches whatever a mount cut short left behind (a mapped
// device without a mount): Unmount is idempotent and unmaps even when
// nothing is mounted.
func (d *Driver) undoHalfMount(ctx context.Context, ref config.VolumeRef) {
	v, err := d.cfg.API.Volume(ctx, ref)
	if err != nil {
		return
	}
	mounter, err := d.mounter(&v)
	if err != nil {
		return
	}
	sv, err := storage.FromConfig(&v)
	if err != nil {
		return
	}
	if err := mounter.Unmount(ctx, sv); err != nil {
		d.log.WithError(err).WithField("volume", ref.String()).Error("cleaning up a half-done mount")
	}
}

func (d *Driver) adopt(ctx context.Context, mnt storage.Mount) {
	ref := config.VolumeRef{Policy: mnt.Volume.Policy, Name: mnt.Volume.Name}
	log := d.log.WithField("volume", ref.String()).WithField("path", mnt.Path)
	v, err := d.cfg.API.Volume(ctx, ref)
	if err != nil {
		log.WithError(err).Error("a volume is mounted here but volmaster has no usable record of it; leaving it mounted")
		return
	}
	m := &mounted{vol: v, path: mnt.Path, device: mnt.Device, ids: map[string]bool{}}
	u, err := d.cfg.API.Use(ctx, ref)
	switch {
	case err == nil && u.Hostname != d.cfg.Host:
		m.lost = "locked by host " + u.Hostname
		log.WithField("holder", u.Hostname).Error("LOCK LOST: another host took this volume while volplugin was down; this host must not write to it")
	case err == nil:
		for _, id := range u.MountIDs {
			m.ids[id] = true
		}
	case !errors.Is(err, config.ErrNotFound):
		log.WithError(err).Warn("cannot read the volume's lock")
	}
	if len(m.ids) == 0 {
		m.ids[recoveredID] = true
	}
	d.mu.Lock()
	d.mounts[ref] = m
	d.mu.Unlock()
	d.noteMounts()
	d.applyLimits(ref, mnt.Device, v.Runtime)
	log.Info("re-adopted a mount that survived a restart")
}
