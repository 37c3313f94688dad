package volplugin

import (
	"context"
	"time"

	"github.com/volplugin/volplugin/internal/diag"
)

// globalPoll is how often volplugin re-reads the global configuration: it
// changes rarely, and one GET per host per interval costs nothing.
const globalPoll = 15 * time.Second

// watchGlobal applies changes of the global configuration without a
// restart, until ctx ends: Debug sets the log level, Timeout bounds the next
// Docker requests. (A new TTL applies to the next host lease; the backends'
// tool timeouts and the mount root stay as they were at start.)
func (d *Driver) watchGlobal(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gctx, cancel := context.WithTimeout(ctx, d.opTimeout())
		g, err := d.cfg.API.Global(gctx)
		cancel()
		if err != nil {
			d.log.WithError(err).Debug("reading the global configuration")
			continue
		}
		d.mu.Lock()
		changed := d.global == nil || *d.global != g
		d.global = &g
		d.mu.Unlock()
		if changed {
			d.saveState(d.log)
		}
		if diag.FollowDebug(d.log, d.logFloor, g.Debug) {
			d.log.WithField("level", d.log.GetLevel().String()).Info("log level changed by the global configuration")
		}
		if to := g.TimeoutDuration(); to > 0 && int64(to) != d.timeout.Swap(int64(to)) {
			d.log.WithField("timeout", to.String()).Info("operation timeout changed by the global configuration")
		}
	}
}
