package volmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// A query Go would cut short (over 10,000 parameters) is a 400, not a poll
// of nothing; the body form takes the same set.
func TestRuntimePollQueryParsedWhole(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	var q strings.Builder
	q.WriteString("/v1/runtimes?since=0&wait=30s")
	for i := range 10001 {
		fmt.Fprintf(&q, "&volume=p/x%d", i)
	}
	start := time.Now()
	if code, body := h.do(t, "GET", q.String(), ""); code != 400 || !strings.Contains(body, "POST /v1/runtimes/watch") {
		t.Errorf("GET with 10,003 parameters = %d %s, want 400", code, body)
	}
	if time.Since(start) > 20*time.Second {
		t.Error("the refused poll waited")
	}
	vols := make([]string, 0, 5000)
	for i := range 4999 {
		vols = append(vols, fmt.Sprintf("p/x%d", i))
	}
	vols = append(vols, "p/v")
	body, _ := json.Marshal(map[string]any{"volumes": vols, "since": 0, "wait": "1s"})
	var ch config.RuntimeChanges
	if err := json.Unmarshal([]byte(h.must(t, 200, "POST", "/v1/runtimes/watch", string(body))), &ch); err != nil ||
		len(ch.Changes) != 1 || ch.Changes[0].Name != "v" {
		t.Errorf("POST with 5,000 volumes = %+v, %v; want the one that exists", ch, err)
	}
	for _, bad := range []string{`{"volumes":["p/v"],"since":-1}`, `{"volumes":["p/v"],"wait":"2m"}`, `{"volumes":["../x"]}`, `{"volume":["p/v"]}`} {
		if code, out := h.do(t, "POST", "/v1/runtimes/watch", bad); code != 400 {
			t.Errorf("POST %s = %d %s, want 400", bad, code, out)
		}
	}
}

// A caller may hold 8 long polls at once; the 9th is a 429 at once, and
// polls held by others are not affected.
func TestRuntimePollsAreCapped(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	var rev config.RuntimeChanges
	_ = json.Unmarshal([]byte(h.must(t, 200, "POST", "/v1/runtimes/watch", `{"volumes":["p/v"]}`)), &rev)
	hold := fmt.Sprintf(`{"volumes":["p/v"],"since":%d,"wait":"1m"}`, rev.Revision)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range maxPollsPerToken {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", h.url+"/v1/runtimes/watch", strings.NewReader(hold))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	held := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			h.srv.polls.mu.Lock()
			n := h.srv.polls.total
			h.srv.polls.mu.Unlock()
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d polls held, want %d", n, want)
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	held(maxPollsPerToken)
	if code, body := h.do(t, "POST", "/v1/runtimes/watch", hold); code != 429 || !strings.Contains(body, "too-many") {
		t.Errorf("9th poll = %d %s, want 429 too-many", code, body)
	}
	// Once its polls end, the caller gets through again.
	cancel()
	wg.Wait()
	held(0)
	h.must(t, 200, "POST", "/v1/runtimes/watch", `{"volumes":["p/v"],"wait":"0s"}`)
}
