package volcli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/volmaster"
)

// harness is a real etcd and an in-process volmaster for one test.
type harness struct {
	t    *testing.T
	ctx  context.Context
	etcd *clientv3.Client
	keys config.Keys
	srv  *volmaster.Server
	url  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, err := config.NewKeys("/volplugin")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := local.New(local.Config{DataDir: t.TempDir(), MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv, err := volmaster.New(volmaster.Config{
		Client: cli, Keys: keys, Log: log,
		Backends:     map[string]storage.CRUD{config.BackendLocal: lb},
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb},
		Now:          strictClock(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Run(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	// Cleanups run last-in first-out: the HTTP server stops, then the
	// volmaster's background work, then etcd.
	t.Cleanup(cancel)
	t.Cleanup(ts.Close)
	return &harness{t: t, ctx: ctx, etcd: cli, keys: keys, srv: srv, url: ts.URL}
}

// strictClock is the real clock, except that each reading is at least a
// millisecond after the last: snapshots are named by the millisecond, and two
// taken back to back must not collide.
func strictClock() func() time.Time {
	var (
		mu   sync.Mutex
		last time.Time
	)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if next := last.Add(time.Millisecond); now.Before(next) {
			now = next
		}
		last = now
		return now
	}
}

// result is one volcli run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs volcli against the harness's volmaster with stdin as input.
func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	return runVolcli(stdin, append([]string{"--volmaster", h.url}, args...)...)
}

func runVolcli(stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := Run(append([]string{"volcli"}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok runs volcli and fails the test unless it exits 0.
func (h *harness) ok(stdin string, args ...string) string {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("volcli %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs volcli and checks the exit code and that stderr is one
// "volcli: " line containing msg; it returns that line.
func (h *harness) fails(code int, msg string, stdin string, args ...string) string {
	h.t.Helper()
	return checkFail(h.t, h.run(stdin, args...), code, msg, args)
}

func checkFail(t *testing.T, r result, code int, msg string, args []string) string {
	t.Helper()
	what := "volcli " + strings.Join(args, " ")
	if r.code != code {
		t.Errorf("%s: exit %d, want %d (stderr %q)", what, r.code, code, r.stderr)
	}
	line := strings.TrimSuffix(r.stderr, "\n")
	if !strings.HasPrefix(line, "volcli: ") || strings.Contains(line, "\n") {
		t.Errorf("%s: stderr %q is not one \"volcli: \" line", what, r.stderr)
	}
	if !strings.Contains(line, msg) {
		t.Errorf("%s: stderr %q does not contain %q", what, r.stderr, msg)
	}
	for _, raw := range []string{"HTTP", "http: ", "etcd", "{\"", "/volplugin/"} {
		if strings.Contains(line, raw) {
			t.Errorf("%s: stderr %q leaks %q", what, r.stderr, raw)
		}
	}
	return line
}

// dump returns every key under the volplugin prefix.
func (h *harness) dump() map[string]string {
	h.t.Helper()
	d, err := h.srv.Store().Dump(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) sameDump(before map[string]string, what string) {
	h.t.Helper()
	if after := h.dump(); !maps.Equal(before, after) {
		h.t.Errorf("%s changed etcd:\nbefore %v\nafter  %v", what, before, after)
	}
}

// putUse stores a mount lock as volplugin would.
func (h *harness) putUse(u config.Use) {
	h.t.Helper()
	b, err := json.Marshal(u)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.etcd.Put(h.ctx, h.keys.Use(u.Volume), string(b)); err != nil {
		h.t.Fatal(err)
	}
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output %q is not JSON of %T: %v", s, v, err)
	}
	return v
}

func localPolicy(size string) string {
	return `{"backend": "local", "create": {"size": "` + size + `"}}`
}
