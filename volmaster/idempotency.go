package volmaster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
)

const (
	// requestMemory is how long an answer is replayed at least: records of
	// finished requests sit on a lease of twice this, replaced every
	// requestMemory, so one lease serves every request of the hour.
	requestMemory = time.Hour
	// pendingWait bounds how long a repeated request waits for its first
	// attempt, still running, before it is answered busy.
	pendingWait = time.Minute
	// maxReplayBody is the largest answer kept for a replay; a larger one
	// (none of the mutating routes answers one) is not remembered.
	maxReplayBody = 256 << 10
	maxKeyLen     = 128
)

// requestLease hands out the lease that finished request records live on.
type requestLease struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

func (s *Server) doneLease(ctx context.Context) (clientv3.LeaseID, error) {
	l := &s.reqLease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != 0 && s.now().Sub(l.granted) < requestMemory {
		return l.id, nil
	}
	gctx, cancel := context.WithTimeout(ctx, config.DefaultEtcdTimeout)
	defer cancel()
	g, err := s.store.Client().Grant(gctx, int64(2*requestMemory/time.Second))
	if err != nil {
		return 0, config.EtcdError("lease for idempotent answers", err)
	}
	l.id, l.granted = g.ID, s.now()
	return l.id, nil
}

// validKey accepts 1 to 128 printable ASCII characters without spaces (a
// UUID, a random hex string, ...).
func validKey(k string) error {
	if len(k) == 0 || len(k) > maxKeyLen {
		return fmt.Errorf("%s must be 1 to %d characters: %w", config.IdempotencyKeyHeader, maxKeyLen, config.ErrInvalid)
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' {
			return fmt.Errorf("%s may hold only printable ASCII without spaces: %w", config.IdempotencyKeyHeader, config.ErrInvalid)
		}
	}
	return nil
}

func digest(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// idempotent answers a mutating request that carries an Idempotency-Key
// the way its first attempt was answered, if that one succeeded: a client
// that lost the answer of a create, upload or remove can send it again
// without doing it twice or being told 409 or 404. Failed attempts are not
// remembered (a failed request changes nothing; the retry runs again). Keys
// are per caller (token), so one caller cannot read another's answers.
func (s *Server) idempotent(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(config.IdempotencyKeyHeader)
		if key == "" || r.Method == http.MethodGet || r.Method == http.MethodHead {
			next(w, r)
			return
		}
		if err := validKey(key); err != nil {
			writeError(w, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, fmt.Errorf("read request body: %v: %w", err, config.ErrInvalid))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		who := "anonymous"
		if tok, ok := caller(r); ok {
			who = "token:" + tok.ID
		}
		id := digest([]byte(who), []byte(key))
		fp := digest([]byte(r.Method), []byte(r.URL.RequestURI()), body)
		rev, replay, err := s.claim(r.Context(), id, fp)
		if err != nil {
			writeError(w, err)
			return
		}
		if replay != nil {
			for k, v := range replay.Header {
				w.Header()[k] = v
			}
			w.Header().Set(config.IdempotentReplayHeader, "true")
			w.WriteHeader(replay.Status)
			_, _ = w.Write(replay.Body)
			return
		}
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		next(rec, r)
		s.settleClaim(r.Context(), id, rev, fp, rec)
	}
}

// claim makes this request the first with id, or returns the answer of the
// first. A first attempt still running is waited for (up to pendingWait).
func (s *Server) claim(ctx context.Context, id, fp string) (int64, *store.Request, error) {
	h, err := s.holder(ctx)
	if err != nil {
		return 0, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, pendingWait)
	defer cancel()
	for {
		got, rev, err := s.store.BeginRequest(ctx, id, store.Request{Fingerprint: fp, Owner: s.owner}, h.Lease)
		switch {
		case errors.Is(err, config.ErrBusy) && wctx.Err() == nil:
			continue // the record went between compare and read: claim again
		case err != nil:
			return 0, nil, err
		case got == nil:
			return rev, nil, nil
		case got.Fingerprint != fp:
			return 0, nil, fmt.Errorf("%s was already used for a different request (method, path or body differ): %w",
				config.IdempotencyKeyHeader, config.ErrInvalid)
		case got.Done:
			return 0, got, nil
		}
		if err := s.store.WaitRequest(wctx, id, rev); err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return 0, nil, fmt.Errorf("the first request with this %s (by %s) is still running: %w",
					config.IdempotencyKeyHeader, got.Owner, config.ErrBusy)
			}
			return 0, nil, err
		}
	}
}

// settleClaim remembers a successful answer, or lets go of the key after a
// failure. It runs even if the caller went away: that is when a retry comes.
func (s *Server) settleClaim(ctx context.Context, id string, rev int64, fp string, rec *answerRecorder) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var err error
	if rec.status >= 200 && rec.status < 300 && rec.body.Len() <= maxReplayBody {
		var lease clientv3.LeaseID
		if lease, err = s.doneLease(ctx); err == nil {
			err = s.store.FinishRequest(ctx, id, rev, store.Request{Fingerprint: fp, Status: rec.status,
				Header: rec.header, Body: rec.body.Bytes()}, lease)
		}
	} else {
		err = s.store.AbandonRequest(ctx, id, rev)
	}
	if err != nil {
		// The pending record goes with this volmaster's lease at the latest.
		s.log.WithError(err).Warn("idempotency key record not updated")
	}
}

// answerRecorder passes an answer through and keeps a copy of it.
type answerRecorder struct {
	http.ResponseWriter
	status int
	header map[string][]string
	body   bytes.Buffer
	wrote  bool
}

func (a *answerRecorder) WriteHeader(code int) {
	if a.wrote {
		return
	}
	a.wrote, a.status = true, code
	a.header = map[string][]string{}
	for k, v := range a.ResponseWriter.Header() {
		if k != "X-Request-Id" && k != "Date" {
			a.header[k] = append([]string(nil), v...)
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if !a.wrote {
		a.WriteHeader(http.StatusOK)
	}
	if a.body.Len() <= maxReplayBody {
		a.body.Write(b)
	}
	return a.ResponseWriter.Write(b)
}
