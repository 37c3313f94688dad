// Package volmaster is the control plane's REST API: the only writer of
// policies and volume records in etcd. It is stateless beside etcd and its
// in-memory read cache, so several may run behind one address.
package volmaster

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/diag"
	"github.com/volplugin/volplugin/internal/volops"
	"github.com/volplugin/volplugin/lock"
	"github.com/volplugin/volplugin/storage"
)

// Config wires a volmaster.
type Config struct {
	Client *clientv3.Client
	Keys   config.Keys
	// Backends maps a backend name (config.BackendLocal, ...) to its CRUD
	// implementation. A policy whose backend is missing here cannot create
	// volumes on this volmaster.
	Backends map[string]storage.CRUD
	// Snapshotters maps a backend name to its Snapshotter, for on-demand
	// snapshots.
	Snapshotters map[string]storage.Snapshotter
	Log          *logrus.Logger
	// Auth requires a bearer token with the right role on every non-public
	// route.
	Auth bool
	// AuditSize is how many audit entries GET /v1/audit keeps (default 1000),
	// and how many refused requests.
	AuditSize int
	// AuditFile, if set, receives every audit entry as a JSON line.
	AuditFile string
	// EtcdTimeout bounds each etcd call (config.DefaultEtcdTimeout if zero).
	EtcdTimeout time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Server serves the volmaster API.
type Server struct {
	store    *store.Store
	locks    *lock.Manager
	ops      *volops.Ops
	metrics  *metrics
	started  time.Time
	auth     bool
	audit    *auditLog
	cache    *store.Cache
	backends map[string]storage.CRUD
	log      *logrus.Logger
	now      func() time.Time
	owner    string
	// id names this volmaster in its registration (GET /v1/cluster).
	id string
	// ttlChanged tells the registration that the global TTL changed.
	ttlChanged chan struct{}
	global     atomic.Pointer[config.Global]
	// logFloor is the log level at start: the global Debug only adds to it.
	logFloor logrus.Level
	// legacyTokens holds the IDs of unscoped host tokens already warned about.
	legacyTokens sync.Map

	runCtx  context.Context
	sessMu  sync.Mutex
	session *concurrency.Session
	// reqLease is the lease of remembered idempotent answers.
	reqLease requestLease
	polls    pollLimit

	recoverMu      sync.Mutex
	recoverBackoff map[config.VolumeRef]backoff
}

// New prepares a server; call Run to start its background work.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("volmaster: no etcd client")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	host, _ := os.Hostname()
	s := &Server{
		store:    store.New(cfg.Client, cfg.Keys, cfg.EtcdTimeout),
		backends: cfg.Backends,
		log:      cfg.Log,
		logFloor: cfg.Log.GetLevel(),
		now:      cfg.Now,
		owner:    fmt.Sprintf("volmaster@%s/%d", host, os.Getpid()),
		id:       newVolmasterID(),

		ttlChanged: make(chan struct{}, 1),
		started:    cfg.Now(),
		auth:       cfg.Auth,

		recoverBackoff: map[config.VolumeRef]backoff{},
	}
	af, err := openAuditFile(cfg.AuditFile)
	if err != nil {
		return nil, err
	}
	s.audit = newAuditLog(cfg.Log, cfg.AuditSize, af)
	s.audit.volmaster = s.id
	s.cache = s.store.NewCache()
	s.metrics = newMetrics(s, slices.Sorted(maps.Keys(cfg.Backends)))
	s.locks = lock.New(cfg.Client, cfg.Keys, cfg.EtcdTimeout)
	s.ops = &volops.Ops{Store: s.store, Backends: cfg.Snapshotters, CRUD: cfg.Backends, By: s.owner, Daemon: "volmaster", Now: cfg.Now,
		Observe: s.metrics.observeBackend}
	g := config.DefaultGlobal()
	s.global.Store(&g)
	return s, nil
}

// Store exposes the etcd store (for tests and tools).
func (s *Server) Store() *store.Store { return s.store }

// Run initialises the schema, then keeps the read cache and the global
// configuration current until ctx ends. It returns once the cache is loaded;
// the background work stops with ctx.
func (s *Server) Run(ctx context.Context) error {
	s.runCtx = ctx
	migrated, err := s.store.Upgrade(ctx)
	for _, m := range migrated {
		s.log.WithFields(logrus.Fields{"from": m.From, "to": m.To, "ops": m.Ops}).Infof("etcd schema migrated: %s: %s", m.What, m.Summary)
	}
	if err != nil {
		return err
	}
	go s.cache.Run(ctx)
	go s.watchGlobal(ctx)
	wctx, cancel := context.WithTimeout(ctx, config.DefaultEtcdTimeout)
	defer cancel()
	if err := s.cache.WaitRevision(wctx, 1); err != nil {
		return fmt.Errorf("load volume cache: %w", err)
	}
	go s.recoverLoop(ctx)
	go func() {
		<-ctx.Done()
		s.sessMu.Lock()
		defer s.sessMu.Unlock()
		if s.session != nil {
			_ = s.session.Close()
		}
	}()
	return nil
}

func (s *Server) watchGlobal(ctx context.Context) {
	for g := range s.store.WatchGlobal(ctx) {
		g := g
		if old := s.global.Swap(&g); old.TTL != g.TTL {
			select {
			case s.ttlChanged <- struct{}{}:
			default: // one pending signal is enough
			}
		}
		diag.FollowDebug(s.log, s.logFloor, g.Debug)
	}
}

// timeout is the current per-operation backend timeout from global config.
func (s *Server) timeout() time.Duration { return s.global.Load().TimeoutDuration() }

// holder returns the lease-backed identity for operation locks, opening a new
// session if the previous lease was lost.
func (s *Server) holder(ctx context.Context) (store.Holder, error) {
	sess, err := s.liveSession(ctx)
	if err != nil {
		return store.Holder{}, err
	}
	return store.Holder{Lease: sess.Lease(), Owner: s.owner}, nil
}

// liveSession returns this volmaster's etcd session (its lease, kept alive
// while it runs), opening a new one if the previous lease was lost.
func (s *Server) liveSession(ctx context.Context) (*concurrency.Session, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.session != nil {
		select {
		case <-s.session.Done():
			s.session = nil
		default:
		}
	}
	if s.session == nil {
		gctx, cancel := context.WithTimeout(ctx, config.DefaultEtcdTimeout)
		defer cancel()
		lease, err := s.store.Client().Grant(gctx, s.global.Load().TTL)
		if err != nil {
			return nil, fmt.Errorf("etcd lease for operation locks: %v: %w", err, config.ErrUnavailable)
		}
		// The session's keep-alive lives as long as the server, not the request.
		sess, err := concurrency.NewSession(s.store.Client(), concurrency.WithLease(lease.ID), concurrency.WithContext(s.runCtx))
		if err != nil {
			return nil, fmt.Errorf("etcd lease for operation locks: %v: %w", err, config.ErrUnavailable)
		}
		s.session = sess
	}
	return s.session, nil
}

// Handler returns the API with its middleware chain around every route.
func (s *Server) Handler() http.Handler {
	return requestID(accessLog(s.log)(s.router()))
}

// settle waits (briefly) until the cache has seen a write, so the caller's
// next read observes it.
func (s *Server) settle(ctx context.Context, rev int64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cache.WaitRevision(ctx, rev); err != nil {
		s.log.WithError(err).Warn("read cache is lagging behind etcd")
	}
}
