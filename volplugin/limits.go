package volplugin

import (
	"context"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/iolimit"
)

// runtimePoll is how often runtime options of mounted volumes are re-read
// from volmaster, so a `volcli volume runtime upload` reaches the running
// containers within about this long, without a remount.
const runtimePoll = 3 * time.Second

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

// watchRuntime re-reads the runtime options of every mounted volume and
// re-applies changed rate limits, until ctx ends.
func (d *Driver) watchRuntime(ctx context.Context) {
	t := time.NewTicker(runtimePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		refs := make([]config.VolumeRef, 0, len(d.mounts))
		for ref := range d.mounts {
			refs = append(refs, ref)
		}
		d.mu.Unlock()
		for _, ref := range refs {
			rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
			rt, err := d.cfg.API.Runtime(rctx, ref)
			cancel()
			if err != nil {
				continue
			}
			d.mu.Lock()
			m := d.mounts[ref]
			changed := m != nil && m.vol.Runtime != rt
			if changed {
				m.vol.Runtime = rt
			}
			var dev string
			if m != nil {
				dev = m.device
			}
			d.mu.Unlock()
			if changed {
				d.log.WithField("volume", ref.String()).Info("runtime options changed; re-applying I/O limits")
				d.applyLimits(ref, dev, rt)
			}
		}
	}
}
