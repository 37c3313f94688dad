package volplugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// hostLease keeps this host's one etcd lease alive through volmaster. When
// the lease is lost (volmaster or etcd unreachable for longer than the TTL),
// it grants a new one. After every grant, including the first, it calls onNew
// so the driver can put its locks (recovered ones at start) on the lease;
// onNew must not block (the renewals wait for it).
type hostLease struct {
	api    *client.Client
	host   string
	holder string
	log    logrus.FieldLogger
	onNew  func(ctx context.Context, id int64)
	// onRenewFailure and onRenewed, if set, are told of each failed and
	// each successful renewal (metrics, self-health).
	onRenewFailure, onRenewed func()

	mu      sync.Mutex
	id      int64
	ttl     time.Duration
	renewed time.Time
	ready   chan struct{}
}

func newHostLease(api *client.Client, host, holder string, log logrus.FieldLogger, onNew func(context.Context, int64)) *hostLease {
	return &hostLease{api: api, host: host, holder: holder, log: log, onNew: onNew, ready: make(chan struct{})}
}

// ID returns the current lease, waiting until there is one or ctx ends.
func (l *hostLease) ID(ctx context.Context) (int64, error) {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return 0, fmt.Errorf("no host lease yet: volmaster unreachable?: %w", config.ErrUnavailable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id == 0 || time.Since(l.renewed) > l.ttl {
		return 0, fmt.Errorf("host lease lost: volmaster unreachable for longer than the lease TTL: %w", config.ErrUnavailable)
	}
	return l.id, nil
}

// current returns the lease if it is still valid by this host's clock, else 0.
func (l *hostLease) current() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id == 0 || time.Since(l.renewed) > l.ttl {
		return 0
	}
	return l.id
}

// callTimeout bounds one grant or renewal well under the renewal period
// (TTL/3), so a hung volmaster or a half-open connection costs one attempt,
// not the lease.
func callTimeout(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = config.DefaultTTL * time.Second
	}
	return max(ttl/6, 500*time.Millisecond)
}

// State reports the lease for /info.
func (l *hostLease) State() (id int64, ttl time.Duration, renewed time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id, l.ttl, l.renewed
}

// Run grants the lease and renews it every TTL/3 until ctx ends; then it
// revokes nothing: locks of mounts that stay must outlive a restart.
func (l *hostLease) Run(ctx context.Context) {
	readyOnce := sync.OnceFunc(func() { close(l.ready) })
	for ctx.Err() == nil {
		l.mu.Lock()
		id, ttl, renewed := l.id, l.ttl, l.renewed
		l.mu.Unlock()
		// A failed call is tried again soon: TTL/6 leaves two more tries
		// before the lease expires.
		wait := time.Second
		if ttl > 0 {
			wait = min(wait, max(ttl/6, 100*time.Millisecond))
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout(ttl))
		if id == 0 || time.Since(renewed) > ttl {
			hl, err := l.api.GrantLease(cctx, l.host, l.holder)
			cancel()
			if err != nil {
				l.log.WithError(err).Warn("cannot get a host lease from volmaster")
			} else {
				l.set(hl.ID, time.Duration(hl.TTL)*time.Second)
				l.log.WithField("lease", hl.ID).WithField("ttl", hl.TTL).Info("host lease granted")
				readyOnce()
				if l.onRenewed != nil {
					l.onRenewed()
				}
				l.onNew(ctx, hl.ID)
				wait = time.Duration(hl.TTL) * time.Second / 3
			}
		} else {
			hl, err := l.api.KeepAlive(cctx, id)
			cancel()
			switch {
			case errors.Is(err, config.ErrNotFound):
				l.log.WithField("lease", id).Error("host lease expired: its mount locks are gone; taking a new lease and re-acquiring them")
				l.mu.Lock()
				l.renewed = time.Time{}
				l.mu.Unlock()
				continue
			case err != nil:
				l.log.WithError(err).Warn("cannot renew the host lease")
				if l.onRenewFailure != nil {
					l.onRenewFailure()
				}
			default:
				l.set(id, time.Duration(hl.TTL)*time.Second)
				if l.onRenewed != nil {
					l.onRenewed()
				}
				wait = ttl / 3
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func (l *hostLease) set(id int64, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.id, l.ttl, l.renewed = id, ttl, time.Now()
}
