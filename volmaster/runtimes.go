package volmaster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/volplugin/volplugin/config"
)

// Bounds of the runtime long poll: how long one may wait, how many volumes
// it may name, and how many may be held at once, per caller and in all.
const (
	maxRuntimeWait   = time.Minute
	maxRuntimeRefs   = 10000
	maxPollsPerToken = 8
	maxPolls         = 512
)

// pollLimit counts the long polls being held, per caller and in all: each
// holds a goroutine and a parsed volume set for up to a minute, so an
// unbounded number of them exhausts volmaster's memory.
type pollLimit struct {
	mu    sync.Mutex
	per   map[string]int
	total int
}

func (p *pollLimit) acquire(who string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= maxPolls {
		return fmt.Errorf("%d runtime long polls are held already, at most %d: %w", p.total, maxPolls, config.ErrTooMany)
	}
	if p.per[who] >= maxPollsPerToken {
		return fmt.Errorf("%s holds %d runtime long polls already, at most %d: %w", who, p.per[who], maxPollsPerToken, config.ErrTooMany)
	}
	if p.per == nil {
		p.per = map[string]int{}
	}
	p.per[who]++
	p.total++
	return nil
}

func (p *pollLimit) release(who string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.per[who]--; p.per[who] <= 0 {
		delete(p.per, who)
	}
}

// pollCaller names whoever holds a long poll: its token, or its address
// with auth off.
func pollCaller(r *http.Request) string {
	if t, ok := caller(r); ok {
		return "token " + t.ID
	}
	return "client " + clientAddr(r)
}

// watchRuntimes answers GET /v1/runtimes?volume=P/N&...&since=REV&wait=D.
// The query is parsed strictly: one Go would cut short (more than 10,000
// parameters) is a 400, not a poll of nothing.
func (s *Server) watchRuntimes(w http.ResponseWriter, r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("query: %v (POST /v1/runtimes/watch takes the volumes in its body): %w", err, config.ErrInvalid)
	}
	for k := range q {
		if k != "volume" && k != "since" && k != "wait" {
			return fmt.Errorf("unknown parameter %q (volume, since, wait): %w", k, config.ErrInvalid)
		}
	}
	rq := config.RuntimePoll{Volumes: q["volume"], Wait: q.Get("wait")}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("since %q is not an etcd revision (0 or more): %w", v, config.ErrInvalid)
		}
		rq.Since = n
	}
	return s.pollRuntimes(w, r, rq)
}

// watchRuntimesBody answers POST /v1/runtimes/watch, the same long poll with
// {"volumes": [...], "since": REV, "wait": "30s"} as its body: no URL limit.
func (s *Server) watchRuntimesBody(w http.ResponseWriter, r *http.Request) error {
	var rq config.RuntimePoll
	if err := decodeBody(w, r, &rq); err != nil {
		return fmt.Errorf("runtime poll: %w", err)
	}
	if rq.Since < 0 {
		return fmt.Errorf("since %d is not an etcd revision (0 or more): %w", rq.Since, config.ErrInvalid)
	}
	return s.pollRuntimes(w, r, rq)
}

// pollRuntimes is a long poll for runtime changes: it answers as soon as
// one of the named volumes' runtime records changes after since (at once
// for since 0 or a change already there), or with no changes after wait.
// volplugin holds one per host instead of polling each mounted volume.
func (s *Server) pollRuntimes(w http.ResponseWriter, r *http.Request, rq config.RuntimePoll) error {
	if len(rq.Volumes) > maxRuntimeRefs {
		return fmt.Errorf("%d volumes in one poll, at most %d: %w", len(rq.Volumes), maxRuntimeRefs, config.ErrInvalid)
	}
	seen := map[config.VolumeRef]bool{}
	var refs []config.VolumeRef
	for _, v := range rq.Volumes {
		ref, err := config.ParseVolumeRef(v)
		if err != nil {
			return err
		}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	refs = visibleOnly(r, refs, func(v config.VolumeRef) string { return v.Policy })
	var wait time.Duration
	if rq.Wait != "" {
		d, err := time.ParseDuration(rq.Wait)
		if err != nil || d < 0 || d > maxRuntimeWait {
			return fmt.Errorf("wait %q is not a duration between 0s and %s: %w", rq.Wait, maxRuntimeWait, config.ErrInvalid)
		}
		wait = d
	}
	who := pollCaller(r)
	if err := s.polls.acquire(who); err != nil {
		return err
	}
	defer s.polls.release(who)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	if s.runCtx != nil {
		// A shutting-down volmaster answers its long polls at once.
		defer context.AfterFunc(s.runCtx, cancel)()
	}
	changes, rev, err := s.cache.WaitRuntimes(ctx, refs, rq.Since)
	if err != nil {
		return err
	}
	if changes == nil {
		changes = []config.RuntimeChange{}
	}
	writeJSON(w, http.StatusOK, config.RuntimeChanges{Revision: rev, Changes: changes})
	return nil
}
