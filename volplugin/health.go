package volplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"
)

// HealthLimits are the self-health thresholds. Past any of them volplugin
// refuses NEW mounts (existing ones keep working) until it is back under.
// Zero disables a limit.
type HealthLimits struct {
	// Window is how far back failures count (default 5m).
	Window time.Duration
	// MountFailures and RenewFailures are the most failures tolerated in
	// Window.
	MountFailures, RenewFailures int
	// Goroutines and OpenFDs are the most tolerated at any time.
	Goroutines, OpenFDs int
	// Webhook, if set, receives a POST of the Health JSON on every change
	// between healthy and unhealthy.
	Webhook string
}

// Health is volplugin's self-assessment, in /info and /healthz.
type Health struct {
	Host    string    `json:"host"`
	Healthy bool      `json:"healthy"`
	Reasons []string  `json:"reasons,omitempty"`
	Since   time.Time `json:"since"`
}

// health tracks recent failures against the limits.
type health struct {
	limits HealthLimits
	host   string

	mu       sync.Mutex
	mounts   []time.Time
	renews   []time.Time
	state    Health
	notified bool
}

func newHealth(host string, l HealthLimits) *health {
	if l.Window <= 0 {
		l.Window = 5 * time.Minute
	}
	return &health{limits: l, host: host, state: Health{Host: host, Healthy: true, Since: time.Now().UTC()}, notified: true}
}

func (h *health) mountFailed() { h.mu.Lock(); h.mounts = append(h.mounts, time.Now()); h.mu.Unlock() }
func (h *health) renewFailed() { h.mu.Lock(); h.renews = append(h.renews, time.Now()); h.mu.Unlock() }

// renewed forgets failed renewals: once the lease renews again they say
// nothing more about this host (a volmaster outage is over), and new mounts
// must not stay refused until they age out of the window.
func (h *health) renewed() { h.mu.Lock(); h.renews = nil; h.mu.Unlock() }

func recent(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(since) {
		i++
	}
	return ts[i:]
}

// check re-evaluates the state and reports whether it changed.
func (h *health) check() (Health, bool) {
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	g := runtime.NumGoroutine()
	h.mu.Lock()
	defer h.mu.Unlock()
	since := time.Now().Add(-h.limits.Window)
	h.mounts, h.renews = recent(h.mounts, since), recent(h.renews, since)
	var why []string
	l := h.limits
	if l.MountFailures > 0 && len(h.mounts) >= l.MountFailures {
		why = append(why, fmt.Sprintf("%d failed mounts in %s (limit %d)", len(h.mounts), l.Window, l.MountFailures))
	}
	if l.RenewFailures > 0 && len(h.renews) >= l.RenewFailures {
		why = append(why, fmt.Sprintf("%d failed lease renewals in %s (limit %d)", len(h.renews), l.Window, l.RenewFailures))
	}
	if l.Goroutines > 0 && g >= l.Goroutines {
		why = append(why, fmt.Sprintf("%d goroutines (limit %d)", g, l.Goroutines))
	}
	if l.OpenFDs > 0 && fds >= l.OpenFDs {
		why = append(why, fmt.Sprintf("%d open fds (limit %d)", fds, l.OpenFDs))
	}
	healthy := len(why) == 0
	changed := healthy != h.state.Healthy
	if changed {
		h.state.Since = time.Now().UTC()
		h.notified = false
	}
	h.state.Healthy, h.state.Reasons = healthy, why
	return h.state, changed
}

// refuse returns an error if volplugin should not take new mounts.
func (h *health) refuse() error {
	st, _ := h.check()
	if st.Healthy {
		return nil
	}
	return fmt.Errorf("volplugin on host %s is unhealthy, new mounts are refused: %v: %w", h.host, st.Reasons, errRefused)
}

// run re-checks every period and posts changes to the webhook until ctx ends.
func (h *health) run(ctx context.Context, every time.Duration, logf func(string, ...any)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, _ := h.check()
		h.mu.Lock()
		pending := !h.notified
		h.mu.Unlock()
		if pending {
			if st.Healthy {
				logf("volplugin healthy again")
			} else {
				logf("volplugin unhealthy, refusing new mounts: %v", st.Reasons)
			}
			if h.post(ctx, st) == nil || h.limits.Webhook == "" {
				h.mu.Lock()
				h.notified = true
				h.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *health) post(ctx context.Context, st Health) error {
	if h.limits.Webhook == "" {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.limits.Webhook, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (h *health) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	st, _ := h.check()
	w.Header().Set("Content-Type", "application/json")
	if !st.Healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}
