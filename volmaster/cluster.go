package volmaster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/diag"
)

// etcdStatusTimeout bounds each etcd member's status call in GET /v1/cluster:
// a dead member costs the answer this long, not the client's whole timeout.
const etcdStatusTimeout = 2 * time.Second

// newVolmasterID names this volmaster among others: host and PID, which an
// operator recognises, and a random part, since two servers may share both
// (tests run several in one process).
func newVolmasterID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Register publishes this volmaster (its API URL, version and start time)
// in etcd until ctx ends, on a lease of its own with the global TTL: the
// record goes with the process. It is written once per lease, never
// refreshed (the lease's keep-alive is what says the volmaster lives); it
// moves to a new lease after a lost one, or when the global TTL changes.
// The returned channel is closed once the record is withdrawn after ctx
// ends (wait for it before closing the etcd client).
func (s *Server) Register(ctx context.Context, apiURL string) <-chan struct{} {
	host, _ := os.Hostname()
	st := config.VolmasterStatus{ID: s.id, URL: apiURL, Host: host, PID: os.Getpid(),
		Version: diag.Version, Started: s.started.UTC()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var prev *concurrency.Session
		defer func() { s.endRegistration(ctx, prev) }()
		for ctx.Err() == nil {
			sess, err := s.registerOnce(ctx, st)
			if err != nil {
				if ctx.Err() == nil {
					s.log.WithError(err).Warn("cannot publish this volmaster in etcd (GET /v1/cluster)")
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			// The record is on the new lease now: the old one may go.
			s.endRegistration(ctx, prev)
			prev = sess
			select {
			case <-ctx.Done():
			case <-sess.Done():
			case <-s.ttlChanged:
			}
		}
	}()
	return done
}

// registerOnce writes the record on a new lease and returns its session.
func (s *Server) registerOnce(ctx context.Context, st config.VolmasterStatus) (*concurrency.Session, error) {
	sess, err := concurrency.NewSession(s.store.Client(), concurrency.WithTTL(int(s.global.Load().TTL)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, config.EtcdError("volmaster registration lease", err)
	}
	if err := s.store.PutVolmaster(ctx, st, sess.Lease()); err != nil {
		s.endRegistration(ctx, sess)
		return nil, err
	}
	return sess, nil
}

// endRegistration revokes a registration lease (its record goes with it),
// also after ctx ended: the session's own Close cannot then.
func (s *Server) endRegistration(ctx context.Context, sess *concurrency.Session) {
	if sess == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = s.store.Client().Revoke(cctx, sess.Lease())
	_ = sess.Close()
}

// cluster answers GET /v1/cluster: the volmasters, the etcd members with
// health and leader, and the volsupervisors with their leader. A part that
// cannot be read is reported in the answer, not as a failed request, so
// that the view still shows what is down.
func (s *Server) cluster(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	out := config.ClusterStatus{Answered: s.id}
	var err error
	if out.Volmasters, err = s.store.Volmasters(ctx); err != nil {
		return err
	}
	if out.Etcd, err = s.store.EtcdMembers(ctx, etcdStatusTimeout); err != nil {
		out.EtcdError = err.Error()
	}
	if out.SupervisorLeader, err = s.store.SupervisorLeader(ctx); err != nil {
		return err
	}
	if out.Supervisors, err = s.store.SupervisorStatuses(ctx); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
