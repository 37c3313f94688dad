package volplugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/iolimit"
	"github.com/volplugin/volplugin/storage"
)

// runtimeWait is how long one long poll for runtime changes waits on
// volmaster; a change reaches the running containers as soon as volmaster's
// cache sees it, without a remount.
const runtimeWait = 30 * time.Second

func limitsOf(rt config.RuntimeOptions) iolimit.Limits {
	r := rt.RateLimit
	return iolimit.Limits{ReadBPS: uint64(r.ReadBPS), WriteBPS: uint64(r.WriteBPS), ReadIOPS: r.ReadIOPS, WriteIOPS: r.WriteIOPS}
}

// applyLimits (re)registers the volume's device with its current limits; the
// manager writes them into the cgroup of every container that uses it, now
// and as containers start.
func (d *Driver) applyLimits(ref config.VolumeRef, device string, rt config.RuntimeOptions) {
	if d.cfg.Limits == nil || device == "" {
		return
	}
	l := limitsOf(rt)
	var err error
	if l.IsZero() {
		err = d.cfg.Limits.Remove(ref.String())
	} else {
		err = d.cfg.Limits.Set(ref.String(), device, l)
	}
	if err != nil {
		d.log.WithError(err).WithField("volume", ref.String()).Warn("applying I/O limits")
	}
}

func (d *Driver) dropLimits(ref config.VolumeRef) {
	if d.cfg.Limits == nil {
		return
	}
	if err := d.cfg.Limits.Remove(ref.String()); err != nil {
		d.log.WithError(err).WithField("volume", ref.String()).Warn("removing I/O limits")
	}
}

// noteMounts tells watchRuntime that the set of mounted volumes changed.
func (d *Driver) noteMounts() {
	select {
	case d.mountsChanged <- struct{}{}:
	default:
	}
}

// watchRuntime keeps one long poll on volmaster for runtime changes of the
// mounted volumes and re-applies changed rate limits, until ctx ends. A
// change of the mounted set restarts the poll with the new set (since 0 for
// it: a volume mounted meanwhile gets its current runtime again).
func (d *Driver) watchRuntime(ctx context.Context) {
	var since int64
	warned, failing := false, false
	for ctx.Err() == nil {
		d.mu.Lock()
		refs := make([]config.VolumeRef, 0, len(d.mounts))
		for ref := range d.mounts {
			refs = append(refs, ref)
		}
		d.mu.Unlock()
		if len(refs) == 0 {
			since = 0
			select {
			case <-ctx.Done():
			case <-d.mountsChanged:
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, runtimeWait+d.opTimeout())
		reset := make(chan bool, 1)
		go func() {
			select {
			case <-d.mountsChanged:
				cancel()
				reset <- true
			case <-pctx.Done():
				reset <- false
			}
		}()
		got, err := d.cfg.API.WaitRuntimes(pctx, refs, since, runtimeWait)
		cancel()
		if <-reset {
			since = 0
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				switch {
				case errors.Is(err, config.ErrNotFound) && !warned:
					// No such route: a volmaster older than this volplugin
					// (upgrade volmaster first, docs/operator-guide.md).
					d.log.WithError(err).Warn("volmaster does not serve GET /v1/runtimes: runtime changes reach this host only after volmaster is upgraded")
					warned = true
				case !failing:
					d.log.WithError(err).Warn("waiting for runtime changes failed; retrying every second")
				default:
					d.log.WithError(err).Debug("waiting for runtime changes")
				}
				failing = true
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		if failing {
			d.log.Info("waiting for runtime changes works again")
			failing = false
		}
		since = got.Revision
		for _, ch := range got.Changes {
			d.runtimeChanged(ch.VolumeRef, ch.Runtime)
			d.sizeChanged(ctx, ch.VolumeRef, ch.Size)
		}
	}
}

// runtimeChanged records a volume's new runtime options and re-applies its
// rate limits if they differ from what it has.
func (d *Driver) runtimeChanged(ref config.VolumeRef, rt config.RuntimeOptions) {
	d.mu.Lock()
	m := d.mounts[ref]
	changed := m != nil && m.vol.Runtime != rt
	var dev string
	if changed {
		m.vol.Runtime = rt
		dev = m.device
	}
	d.mu.Unlock()
	if changed {
		d.log.WithField("volume", ref.String()).Info("runtime options changed; re-applying I/O limits")
		d.applyLimits(ref, dev, rt)
	}
}

// resizer is a backend that grows an image and the filesystem mounted from
// it on this host (the local and Ceph backends).
type resizer interface {
	Resize(ctx context.Context, v storage.Volume, size int64) error
}

// sizeChanged grows the filesystem of a volume mounted here to size unless
// it is known to fill it: after a resize while mounted (the image is already
// grown) this host refreshes its mapping and grows the filesystem online. A
// grow that fails is tried again on the next change of the volume's record
// (resizing to the same size again), and at the next mount.
func (d *Driver) sizeChanged(ctx context.Context, ref config.VolumeRef, size string) {
	log := d.log.WithFields(logrus.Fields{"volume": ref.String(), "size": size})
	grown, err := d.growMounted(ctx, ref, size)
	if err != nil {
		log.WithError(err).Warn("cannot grow the resized volume's filesystem online; resize to the same size to try again, or it grows at its next mount")
		return
	}
	if grown {
		log.Info("filesystem grown online to the volume's size")
	}
}

// growMounted grows the filesystem of ref, if mounted here and not known to
// fill size, and tells whether it grew it.
func (d *Driver) growMounted(ctx context.Context, ref config.VolumeRef, size string) (bool, error) {
	d.mu.Lock()
	m := d.mounts[ref]
	known := m == nil || size == "" || m.grownTo == size
	d.mu.Unlock()
	if known {
		return false, nil
	}
	// Not while a Docker request mounts or unmounts it.
	unlock := d.vlock.Hold(ref.Policy, ref.Name)
	defer unlock()
	d.mu.Lock()
	m = d.mounts[ref]
	if m == nil {
		d.mu.Unlock()
		return false, nil
	}
	v := m.vol
	d.mu.Unlock()
	v.Create.Size = size
	sv, err := storage.FromConfig(&v)
	if err != nil {
		return false, fmt.Errorf("resized volume has a size this host cannot read: %w", err)
	}
	mounter, err := d.mounter(&v)
	if err != nil {
		return false, err
	}
	r, ok := mounter.(resizer)
	if !ok {
		return false, nil
	}
	sv.Mounted = true
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.opTimeout())
	err = r.Resize(gctx, sv, sv.Size)
	cancel()
	d.mu.Lock()
	if m := d.mounts[ref]; m != nil {
		m.vol.Create.Size = size
		if err == nil {
			m.grownTo = size
		}
	}
	d.mu.Unlock()
	return err == nil, err
}
