// Package volsupervisor runs the cluster-wide background work: scheduled
// snapshots and their pruning, and the removal of ephemeral volumes that are
// no longer mounted anywhere. Any number of volsupervisors may run; they
// elect one leader through etcd, and every change the leader makes is a
// transaction that also checks its election key, so a leader that was paused
// and lost its lease cannot act when it wakes up: it steps down and campaigns
// again.
package volsupervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/volplugin/volplugin/storage"
)

// Config wires a Supervisor.
type Config struct {
	Client *clientv3.Client
	Keys   config.Keys
	// Name identifies this candidate (in the election and snapshot records).
	Name string
	// Snapshotters maps a backend name to its Snapshotter.
	Snapshotters map[string]storage.Snapshotter
	// Backends maps a backend name to its CRUD backend, for removing
	// ephemeral volumes.
	Backends map[string]storage.CRUD
	Log      *logrus.Logger
	// Tick is how often the leader looks for due work (default 1s).
	Tick time.Duration
	// StatusRefresh is how often the status record in etcd is rewritten
	// when only its last-run time changed (default 5m): a round that
	// changes nothing else writes nothing, so an idle cluster's etcd
	// history does not grow.
	StatusRefresh time.Duration
	Now           func() time.Time
}

// DefaultStatusRefresh is Config.StatusRefresh's default.
const DefaultStatusRefresh = 5 * time.Minute

// Supervisor is one candidate; Run campaigns and, while leading, works.
type Supervisor struct {
	cfg   Config
	store *store.Store
	cache *store.Cache
	log   logrus.FieldLogger

	metrics *metrics

	mu     sync.Mutex
	status config.SupervisorStatus
	// schedules is the leader's snapshot schedule of each volume that has
	// one, as of its last round (nil while not leading).
	schedules map[config.VolumeRef]snapshotSchedule

	// pub is the record publish last wrote; only the goroutine running
	// the terms touches it.
	pub published
	// rounds counts the leader's rounds, statusWrites the status records
	// written (for /metrics and tests).
	rounds, statusWrites atomic.Int64
}

// published is the status record last written to etcd.
type published struct {
	lease   clientv3.LeaseID
	body    []byte
	lastRun time.Time
	at      time.Time
}

// New returns a supervisor.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Client == nil {
		return nil, errors.New("volsupervisor: no etcd client")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StatusRefresh <= 0 {
		cfg.StatusRefresh = DefaultStatusRefresh
	}
	st := store.New(cfg.Client, cfg.Keys, 0)
	s := &Supervisor{cfg: cfg, store: st, cache: st.NewCache(), log: cfg.Log.WithField("supervisor", cfg.Name)}
	s.status.Name = cfg.Name
	s.status.StatusRefresh = config.Duration(cfg.StatusRefresh)
	s.metrics = newMetrics(s)
	return s, nil
}

// Status returns a copy of the current status.
func (s *Supervisor) Status() config.SupervisorStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.NextDue = slices.Clone(st.NextDue)
	return st
}

func (s *Supervisor) update(f func(*config.SupervisorStatus)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
}

// followDebug applies the global Debug setting to the log level, leader or
// not, until ctx ends.
func (s *Supervisor) followDebug(ctx context.Context) {
	floor := s.cfg.Log.GetLevel()
	for g := range s.store.WatchGlobal(ctx) {
		if diag.FollowDebug(s.cfg.Log, floor, g.Debug) {
			s.log.WithField("level", s.cfg.Log.GetLevel().String()).Info("log level changed by the global configuration")
		}
	}
}

// publish writes the status under the session's lease, so volmaster can
// show every running supervisor and a dead one's record goes with it. It
// writes only what changed: nothing when the record is the one last written
// on this lease, and when only the last-run time moved, at most every
// StatusRefresh (each write is a new etcd revision, kept until compaction).
func (s *Supervisor) publish(ctx context.Context, sess *concurrency.Session) {
	st := s.Status()
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	now, lastRun := s.cfg.Now(), st.LastRun
	if p := &s.pub; p.lease == sess.Lease() {
		if bytes.Equal(b, p.body) {
			return
		}
		st.LastRun = p.lastRun
		if old, err := json.Marshal(st); err == nil && bytes.Equal(old, p.body) && now.Sub(p.at) < s.cfg.StatusRefresh {
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.cfg.Client.Put(ctx, s.cfg.Keys.SupervisorStatus(s.cfg.Name), string(b), clientv3.WithLease(sess.Lease())); err != nil {
		s.log.WithError(err).Debug("publishing status")
		return
	}
	s.statusWrites.Add(1)
	s.pub = published{lease: sess.Lease(), body: b, lastRun: lastRun, at: now}
}

// Run campaigns for leadership and leads until ctx ends, campaigning again
// whenever leadership is lost.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.store.CheckSchema(ctx); err != nil {
		return err
	}
	go s.cache.Run(ctx)
	go s.followDebug(ctx)
	for ctx.Err() == nil {
		if err := s.term(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("leadership term ended")
			s.update(func(st *config.SupervisorStatus) { st.LastError = err.Error() })
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// term is one campaign and, if won, one period of leadership.
func (s *Supervisor) term(ctx context.Context) error {
	g, err := s.store.GetGlobal(ctx)
	if err != nil {
		return err
	}
	sess, err := concurrency.NewSession(s.cfg.Client, concurrency.WithTTL(int(g.TTL)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("election session: %w", err)
	}
	defer s.endSession(ctx, sess)
	el := concurrency.NewElection(sess, s.cfg.Keys.Leader())
	s.publish(ctx, sess)
	if err := el.Campaign(ctx, s.cfg.Name); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	key, rev := el.Key(), el.Rev()
	s.log.WithField("key", key).Info("leading")
	s.update(func(st *config.SupervisorStatus) { st.Leading = true })
	defer s.update(func(st *config.SupervisorStatus) { st.Leading, st.NextDue, st.Unproven = false, nil, nil })
	defer s.setSnapshotSchedules(nil)
	guard := clientv3.Compare(clientv3.CreateRevision(key), "=", rev)
	h := store.Holder{Lease: sess.Lease(), Owner: "volsupervisor " + s.cfg.Name}
	w := &worker{s: s, h: h, guard: guard, last: map[config.VolumeRef]time.Time{}, failed: map[config.VolumeRef]time.Time{}}
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("election lease lost")
		case <-tick.C:
			err := w.round(ctx)
			if errors.Is(err, store.ErrNotLeader) {
				return err
			}
			s.publish(ctx, sess)
			s.rounds.Add(1)
		}
	}
}

// revokeTimeout bounds the revocation of the election lease at the end of a
// term.
const revokeTimeout = 5 * time.Second

// endSession revokes the election lease, so that the next volsupervisor
// leads at once rather than after the TTL (its scheduled snapshots would
// be late by that much). The session's own Close cannot: it revokes on the
// session's context, which is ctx and ended already on a stop.
func (s *Supervisor) endSession(ctx context.Context, sess *concurrency.Session) {
	sess.Orphan()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	_, _ = s.cfg.Client.Revoke(rctx, sess.Lease())
}
