package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/volmaster"
)

// volmasters starts n real volmasters sharing one embedded etcd and returns
// their handlers (each wrapped by wrap, if set, for counting or faults).
func volmasters(t *testing.T, n int) []http.Handler {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out []http.Handler
	for range n {
		srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: log, Backends: map[string]storage.CRUD{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Run(ctx); err != nil {
			t.Fatal(err)
		}
		out = append(out, srv.Handler())
	}
	return out
}

// counted serves h and counts the requests it gets.
func counted(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, &n
}

// faultUnavailable is a fault injector: a volmaster that answers every
// request 503 unavailable (its etcd is out of reach).
var faultUnavailable = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":"etcd: unreachable","code":"unavailable"}`)
})

func TestNewChecksEveryURL(t *testing.T) {
	for _, list := range []string{"http://127.0.0.1:1,foo", "http://127.0.0.1:1,,ftp://x"} {
		if _, err := client.New(list); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("New(%q) = %v, want invalid", list, err)
		}
	}
	c, err := client.New(" http://127.0.0.1:1 , https://127.0.0.1:2/ ")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Current(); got != "http://127.0.0.1:1" {
		t.Fatalf("first URL is %q", got)
	}
	if c, err := client.New(""); err != nil || c.Current() != client.DefaultURL {
		t.Fatalf("New(\"\") = %v, %v; want the default URL", c, err)
	}
}

// A volmaster that is down or answers 503 is skipped; the client then sticks
// to the one that answered and does not ask the failed one again.
func TestFailoverSticksToHealthyVolmaster(t *testing.T) {
	vm := volmasters(t, 1)
	bad, badHits := counted(t, faultUnavailable)
	good, goodHits := counted(t, vm[0])
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more: connection refused
	c, err := client.New(down.URL+","+bad.URL+","+good.URL, client.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := c.Policies(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if badHits.Load() != 1 || goodHits.Load() != 3 {
		t.Fatalf("the 503 volmaster got %d calls, the healthy one %d; want 1 and 3", badHits.Load(), goodHits.Load())
	}
	if c.Current() != good.URL {
		t.Fatalf("client sticks to %s, want %s", c.Current(), good.URL)
	}
}

// A keyed POST and the runtime long poll (a read in a POST body) that a
// volmaster answered 503 go on to the next one.
func TestKeyedPostAndReadFailOver(t *testing.T) {
	vm := volmasters(t, 1)
	bad, badHits := counted(t, faultUnavailable)
	good, goodHits := counted(t, vm[0])
	c, err := client.New(bad.URL+","+good.URL, client.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, config.VolumeRequest{Policy: "none", Name: "v"}); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("keyed POST through the failover: %v, want the healthy volmaster's not found", err)
	}
	if _, err := c.WaitRuntimes(ctx, nil, 0, time.Millisecond); err != nil {
		t.Fatalf("runtime poll: %v", err)
	}
	if badHits.Load() != 1 || goodHits.Load() != 2 {
		t.Fatalf("calls: 503 volmaster %d, healthy %d; want 1 and 2", badHits.Load(), goodHits.Load())
	}
}

// The first volmaster does a keyed request but its answer is lost (the
// connection drops after the work). The client sends it again, with the same
// key, to the second volmaster, which finds the first answer in the etcd
// both share and replays it: one policy revision, not two.
func TestKeyedRetryOnOtherVolmasterReplays(t *testing.T) {
	vm := volmasters(t, 2)
	var replayed atomic.Bool
	// Fault injector: volmaster A does the request, then the answer is lost.
	lost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vm[0].ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(lost.Close)
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vm[1].ServeHTTP(w, r)
		if w.Header().Get(config.IdempotentReplayHeader) == "true" {
			replayed.Store(true)
		}
	}))
	t.Cleanup(second.Close)
	c, err := client.New(lost.URL+","+second.URL, client.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, rev, err := c.PutPolicy(ctx, "p1", []byte(`{"backend":"nfs"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !replayed.Load() {
		t.Fatal("the second volmaster did not replay the first one's answer")
	}
	revs, err := c.PolicyRevisions(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || rev != revs[0].Revision {
		t.Fatalf("revisions %+v after one upload retried on another volmaster (answer said %d); want exactly one", revs, rev)
	}
}
