package volplugin

import (
	"context"
	"errors"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// recoveredID stands for Docker mount IDs that were lost with a restart
// (no state file, and the lock in etcd had expired too). Docker's next
// Unmount of the volume, whatever its ID, consumes it.
const recoveredID = "recovered"

// recoverLocal re-adopts, from the state file alone (volmaster may be
// down), every volume that is still mounted, with its exact Docker mount
// IDs. A mount is found by its device (Locate), not by its path, so a
// changed mount root loses nothing. A volume the state lists but that is
// mounted nowhere any more (a crash between unmount and saving the state)
// has its IDs queued for release.
func (d *Driver) recoverLocal(ctx context.Context, st hostState) {
	d.mu.Lock()
	d.releases = append(d.releases, st.Releases...)
	if st.Global != nil && d.global == nil {
		g := *st.Global
		d.global = &g
	}
	d.mu.Unlock()
	for _, sm := range st.Mounts {
		v := sm.Volume
		ref := v.Ref()
		log := d.log.WithField("volume", ref.String())
		mnt, ok, err := d.locate(ctx, &v)
		if err != nil {
			// Cannot tell: keeping it (and its lock) is the safe side.
			log.WithError(err).Warn("cannot tell whether a volume in the state file is still mounted; keeping it")
			mnt, ok = storage.Mount{Path: sm.Path, Device: sm.Device}, true
		}
		if !ok {
			log.Warn("a volume in the state file is no longer mounted; releasing its lock")
			d.undoHalfMount(ctx, &v)
			d.mu.Lock()
			if !v.Unlocked {
				for _, id := range sm.IDs {
					d.releases = append(d.releases, pendingRelease{Volume: ref, MountID: id})
				}
			}
			d.mu.Unlock()
			continue
		}
		ids := sm.IDs
		if len(ids) == 0 {
			ids = []string{recoveredID}
		}
		d.adoptMount(v, mnt, ids, "")
	}
}

// recoverRemote completes recovery with volmaster: mounts under the mount
// root the state file did not know (no state file, or an older volplugin)
// are adopted with the IDs of their lock; and every lock volmaster says this
// host holds for a volume not adopted is looked for by its device: still
// mounted anywhere, it is adopted (never released); mounted nowhere, what a
// cut-short mount left (a mapped device) is undone and the lock released.
func (d *Driver) recoverRemote(ctx context.Context) error {
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
			ref := config.VolumeRef{Policy: mnt.Volume.Policy, Name: mnt.Volume.Name}
			if d.mountpoint(ref) != "" {
				continue
			}
			if err := d.adoptFound(ctx, ref, mnt); err != nil {
				return err
			}
		}
	}
	uses, err := d.cfg.API.Uses(ctx)
	if err != nil {
		return err
	}
	for _, u := range uses {
		if !d.ownLock(u) || d.mountpoint(u.Volume) != "" {
			continue
		}
		if err := d.recoverLock(ctx, u); err != nil {
			return err
		}
	}
	d.kick()
	return nil
}

// recoverLock handles one lock of this host with no adopted mount.
func (d *Driver) recoverLock(ctx context.Context, u config.Use) error {
	unlock := d.vlock.Hold(u.Volume.Policy, u.Volume.Name)
	defer unlock()
	if d.mountpoint(u.Volume) != "" {
		return nil // mounted by Docker meanwhile
	}
	log := d.log.WithField("volume", u.Volume.String())
	v, err := d.cfg.API.Volume(ctx, u.Volume)
	if errors.Is(err, config.ErrNotFound) {
		for _, id := range u.MountIDs {
			d.release(ctx, u.Volume, id)
		}
		return nil
	}
	if err != nil {
		return err
	}
	mnt, ok, err := d.locate(ctx, &v)
	if err != nil {
		return err
	}
	if ok {
		log.WithField("path", mnt.Path).Warn("re-adopted a mount found by its device outside the mount root (was the mount root changed?)")
		d.adoptMount(v, mnt, u.MountIDs, "")
		return nil
	}
	d.undoHalfMount(ctx, &v)
	for _, id := range u.MountIDs {
		d.release(ctx, u.Volume, id)
	}
	log.Warn("cleaned up a mount that did not complete before a restart")
	return nil
}

// Recover re-adopts what is still mounted after a restart; see recoverLocal
// and recoverRemote.
func (d *Driver) Recover(ctx context.Context, st hostState) error {
	d.recoverLocal(ctx, st)
	err := d.recoverRemote(ctx)
	d.saveState(d.log)
	return err
}

// recoverInBackground runs recoverRemote until it succeeds: volplugin serves
// Docker (and keeps its mounts) while volmaster is away.
func (d *Driver) recoverInBackground(ctx context.Context) {
	wait := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.recoverRemote(rctx)
		cancel()
		if err == nil {
			d.saveState(d.log)
			return
		}
		d.log.WithError(err).Warn("recovery: volmaster or a backend not reachable yet; retrying")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// locate finds where v is mounted on this host, by its device.
func (d *Driver) locate(ctx context.Context, v *config.Volume) (storage.Mount, bool, error) {
	mounter, err := d.mounter(v)
	if err != nil {
		return storage.Mount{}, false, err
	}
	sv, err := storage.FromConfig(v)
	if err != nil {
		return storage.Mount{}, false, err
	}
	return mounter.Locate(ctx, sv)
}

// undoHalfMount detaches whatever a mount cut short left behind (a mapped
// device without a mount): Unmount is idempotent and unmaps even when
// nothing is mounted. The caller made sure the device is mounted nowhere.
func (d *Driver) undoHalfMount(ctx context.Context, v *config.Volume) {
	mounter, err := d.mounter(v)
	if err != nil {
		return
	}
	sv, err := storage.FromConfig(v)
	if err != nil {
		return
	}
	if err := mounter.Unmount(ctx, sv); err != nil {
		d.log.WithError(err).WithField("volume", v.Ref().String()).Error("cleaning up a half-done mount")
	}
}

// adoptFound adopts a mount found under the mount root that the state file
// did not list, taking its IDs from its lock.
func (d *Driver) adoptFound(ctx context.Context, ref config.VolumeRef, mnt storage.Mount) error {
	log := d.log.WithField("volume", ref.String()).WithField("path", mnt.Path)
	v, err := d.cfg.API.Volume(ctx, ref)
	if errors.Is(err, config.ErrNotFound) {
		log.WithError(err).Error("a volume is mounted here but volmaster has no record of it; leaving it mounted")
		return nil
	}
	if err != nil {
		return err
	}
	var ids []string
	lost := ""
	u, err := d.cfg.API.Use(ctx, ref)
	switch {
	case err == nil && !d.ownLock(u):
		lost = "locked by " + u.Owner()
		log.WithField("holder", u.Owner()).Error("LOCK LOST: another host (or another daemon of this host) took this volume while volplugin was down; this host must not write to it")
	case err == nil:
		ids = u.MountIDs
	case !errors.Is(err, config.ErrNotFound):
		return err
	}
	if len(ids) == 0 {
		ids = []string{recoveredID}
	}
	d.adoptMount(v, mnt, ids, lost)
	return nil
}

// adoptMount records a mount that survived a restart.
func (d *Driver) adoptMount(v config.Volume, mnt storage.Mount, ids []string, lost string) {
	ref := v.Ref()
	m := &mounted{vol: v, path: mnt.Path, device: mnt.Device, ids: map[string]bool{}, lost: lost}
	for _, id := range ids {
		m.ids[id] = true
	}
	d.mu.Lock()
	d.mounts[ref] = m
	d.mu.Unlock()
	d.noteMounts()
	d.applyLimits(ref, mnt.Device, v.Runtime)
	d.log.WithField("volume", ref.String()).WithField("path", mnt.Path).Info("re-adopted a mount that survived a restart")
}
