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
//
// Losing a lease is an event, as an etcd Session's Done is: Lost(id) is
// closed the moment lease id is known gone (its TTL passed since the last
// renewal this host saw succeed, volmaster answered that it expired, or a
// newer lease replaced it), not at the next use. Done is closed when Run
// returns.
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
	// lost is closed when lease id is lost; expiry closes it at
	// renewed+ttl unless a renewal re-arms it first.
	lost   chan struct{}
	expiry *time.Timer
	done   chan struct{}
}

func newHostLease(api *client.Client, host, holder string, log logrus.FieldLogger, onNew func(context.Context, int64)) *hostLease {
	return &hostLease{api: api, host: host, holder: holder, log: log, onNew: onNew, ready: make(chan struct{}),
		lost: make(chan struct{}), done: make(chan struct{})}
}

// Lost returns a channel closed once lease id is lost (at once if it is
// not the current lease).
func (l *hostLease) Lost(id int64) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != l.id || id == 0 {
		return closedChan
	}
	return l.lost
}

// Done is closed when Run has returned.
func (l *hostLease) Done() <-chan struct{} { return l.done }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// markLost closes lease id's Lost channel if id is still the current lease.
// The caller holds l.mu.
func (l *hostLease) markLostLocked(id int64) {
	if id != l.id {
		return
	}
	select {
	case <-l.lost:
	default:
		close(l.lost)
	}
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
	defer close(l.done)
	defer func() {
		l.mu.Lock()
		if l.expiry != nil {
			l.expiry.Stop()
		}
		l.mu.Unlock()
	}()
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
				l.markLostLocked(id)
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

// set records a grant or renewal of lease id and re-arms its expiry. A new
// lease replaces the old one, whose Lost channel closes if it had not yet.
func (l *hostLease) set(id int64, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != l.id {
		l.markLostLocked(l.id)
		l.lost = make(chan struct{})
	}
	l.id, l.ttl, l.renewed = id, ttl, time.Now()
	if l.expiry != nil {
		l.expiry.Stop()
	}
	l.expiry = time.AfterFunc(ttl, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		// A renewal that raced this timer moved renewed on: not lost.
		if l.id == id && time.Since(l.renewed) >= l.ttl {
			l.markLostLocked(id)
		}
	})
}
