package volmaster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// loseFirstAnswer runs each mutating request the first time it is seen (by
// method and path) and then drops the connection instead of answering: the
// answer lost on the way back that makes a client retry. A fault injector.
func loseFirstAnswer(next http.Handler) http.Handler {
	var mu sync.Mutex
	seen := map[string]bool{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			mu.Lock()
			k := r.Method + " " + r.URL.Path
			first := !seen[k]
			seen[k] = true
			mu.Unlock()
			if first {
				next.ServeHTTP(httptest.NewRecorder(), r)
				panic(http.ErrAbortHandler) // the server closes the connection unanswered
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Every mutating call of internal/client whose first answer is lost is
// retried and answered as the first attempt was: one policy revision, one
// volume, one snapshot, and removes that succeed rather than answer 404.
func TestRetryAfterLostAnswerGetsFirstAnswer(t *testing.T) {
	h := start(t)
	ts := httptest.NewServer(loseFirstAnswer(h.srv.Handler()))
	t.Cleanup(ts.Close)
	c, err := client.New(ts.URL, client.WithRetries(3, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, rev, err := c.PutPolicy(ctx, "p", []byte(localPolicy)); err != nil || rev != 1 {
		t.Fatalf("policy upload whose answer was lost = revision %d, %v; want revision 1", rev, err)
	}
	if revs, err := c.PolicyRevisions(ctx, "p"); err != nil || len(revs) != 1 {
		t.Fatalf("revisions after a retried upload = %v, %v; want exactly one", revs, err)
	}
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	if _, err := c.CreateVolume(ctx, config.VolumeRequest{Policy: "p", Name: "v"}); err != nil {
		t.Fatalf("create whose answer was lost: %v (a retry without the first answer says exists)", err)
	}
	if _, err := c.TakeSnapshot(ctx, ref); err != nil {
		t.Fatalf("snapshot whose answer was lost: %v", err)
	}
	if snaps, err := c.Snapshots(ctx, ref); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after a retried snapshot = %v, %v; want exactly one", snaps, err)
	}
	if _, err := c.RemoveVolume(ctx, ref, config.RemoveOptions{}); err != nil {
		t.Fatalf("remove whose answer was lost: %v (a retry without the first answer says not found)", err)
	}
	if err := c.DeletePolicy(ctx, "p"); err != nil {
		t.Fatalf("policy delete whose answer was lost: %v", err)
	}
	if _, err := c.Volume(ctx, ref); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("volume after remove: %v, want not found", err)
	}
}

func (h *harness) doKey(t *testing.T, method, path, body, key string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(config.IdempotencyKeyHeader, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String(), resp.Header
}

func TestIdempotencyKeyRules(t *testing.T) {
	h := start(t)
	code, _, hdr := h.doKey(t, "PUT", "/v1/policies/p", localPolicy, "k-policy")
	if code != 200 || hdr.Get(config.PolicyRevisionHeader) != "1" || hdr.Get(config.IdempotentReplayHeader) != "" {
		t.Fatalf("first upload = %d, revision %q, replayed %q", code, hdr.Get(config.PolicyRevisionHeader), hdr.Get(config.IdempotentReplayHeader))
	}
	code, _, hdr = h.doKey(t, "PUT", "/v1/policies/p", localPolicy, "k-policy")
	if code != 200 || hdr.Get(config.PolicyRevisionHeader) != "1" || hdr.Get(config.IdempotentReplayHeader) != "true" {
		t.Fatalf("repeated upload = %d, revision %q, replayed %q; want the first answer again", code,
			hdr.Get(config.PolicyRevisionHeader), hdr.Get(config.IdempotentReplayHeader))
	}
	// The same key on another request is refused, and does nothing.
	if code, body, _ := h.doKey(t, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"20MB"}}`, "k-policy"); code != 400 ||
		!strings.Contains(body, "different request") {
		t.Fatalf("key reused for another body = %d %s, want 400", code, body)
	}
	if out := h.must(t, 200, "GET", "/v1/policies/p/revisions", ""); strings.Count(out, `"revision"`) != 1 {
		t.Fatalf("revisions = %s, want one", out)
	}
	// Bad keys are refused before any work.
	for _, k := range []string{"has space", strings.Repeat("x", 129), "tab\there"} {
		if code, body, _ := h.doKey(t, "PUT", "/v1/policies/q", localPolicy, k); code != 400 {
			t.Errorf("key %q = %d %s, want 400", k, code, body)
		}
	}
	h.must(t, 404, "GET", "/v1/policies/q", "")

	// A failed attempt is not remembered: the same key runs again.
	if code, _, _ := h.doKey(t, "DELETE", "/v1/volumes/p/v", "", "k-rm"); code != 404 {
		t.Fatalf("remove of a missing volume = %d, want 404", code)
	}
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	if code, body, _ := h.doKey(t, "DELETE", "/v1/volumes/p/v", "", "k-rm"); code != 200 {
		t.Fatalf("remove with a key whose first use failed = %d %s, want 200 (to the trash)", code, body)
	}

	// Concurrent repeats of one create: one volume, the same answer for all.
	const n = 4
	var wg sync.WaitGroup
	codes, bodies := make([]int, n), make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], bodies[i], _ = h.doKey(t, "POST", "/v1/volumes", `{"policy":"p","name":"w"}`, "k-create")
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != codes[0] || bodies[i] != bodies[0] || codes[0] != 201 {
			t.Errorf("concurrent create %d = %d %s; first = %d %s", i, codes[i], bodies[i], codes[0], bodies[0])
		}
	}
	// Without the key the create is not idempotent.
	h.must(t, 409, "POST", "/v1/volumes", `{"policy":"p","name":"w"}`)
}

// Keys belong to their caller: with auth on, another token's request with
// the same key runs as its own request.
func TestIdempotencyKeyIsPerCaller(t *testing.T) {
	a := startAuth(t)
	nt, err := a.srv.Store().CreateToken(context.Background(), config.TokenRequest{Role: config.RoleAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin1, admin2 := a.tokens["admin"], nt.Secret
	send := func(tok, name string) (int, http.Header) {
		req, _ := http.NewRequest("PUT", a.url+"/v1/policies/"+name, strings.NewReader(localPolicy))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(config.IdempotencyKeyHeader, "shared")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, _ := send(admin1, "p"); code != 200 {
		t.Fatalf("first caller = %d", code)
	}
	code, hdr := send(admin2, "p")
	if code != 200 || hdr.Get(config.IdempotentReplayHeader) != "" || hdr.Get(config.PolicyRevisionHeader) != "2" {
		t.Fatalf("second caller with the same key = %d, replayed %q, revision %q; want its own upload (revision 2)",
			code, hdr.Get(config.IdempotentReplayHeader), hdr.Get(config.PolicyRevisionHeader))
	}
}

// A mount lock release is sent without an Idempotency-Key (it is idempotent
// by itself): one whose answer was lost is retried and answers the IDs left,
// and a retried release of the last ID answers not found, which volplugin
// takes as done; the lock is gone either way.
func TestReleaseRetriedWithoutKey(t *testing.T) {
	h := start(t)
	var keyed []string
	var mu sync.Mutex
	spy := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && r.Header.Get(config.IdempotencyKeyHeader) != "" {
				mu.Lock()
				keyed = append(keyed, r.URL.Path)
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	}
	ts := httptest.NewServer(spy(loseFirstAnswer(h.srv.Handler())))
	t.Cleanup(ts.Close)
	c, err := client.New(ts.URL, client.WithRetries(3, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	l, err := c.GrantLease(ctx, "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m1", "m2"} {
		if _, err := c.AcquireUse(ctx, ref, config.MountRequest{Hostname: "h1", Lease: l.ID, MountID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if rest, err := c.ReleaseUse(ctx, ref, config.MountRequest{Hostname: "h1", MountID: "m1"}); err != nil || len(rest) != 1 || rest[0] != "m2" {
		t.Errorf("release of m1 whose answer was lost = %v, %v; want [m2]", rest, err)
	}
	if _, err := c.ReleaseUse(ctx, ref, config.MountRequest{Hostname: "h1", MountID: "m1"}); err != nil && !errors.Is(err, config.ErrNotFound) {
		t.Errorf("a second release of m1 = %v; want it to change nothing", err)
	}
	if rest, err := c.ReleaseUse(ctx, ref, config.MountRequest{Hostname: "h1", MountID: "m2"}); err != nil && !errors.Is(err, config.ErrNotFound) || len(rest) != 0 {
		t.Errorf("release of the last ID, answer lost = %v, %v; want done (none left or not found)", rest, err)
	}
	if _, err := c.Use(ctx, ref); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("lock after the last release: %v, want not found", err)
	}
	if len(keyed) != 0 {
		t.Errorf("releases sent with an Idempotency-Key: %v", keyed)
	}
}
