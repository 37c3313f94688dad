package volmaster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// GET /v1/runtimes is a long poll: since 0 answers at once with every named
// volume's runtime; with a revision it waits for a change of a named volume
// (not of others), and answers with no changes when the wait runs out.
func TestRuntimeLongPoll(t *testing.T) {
	h := start(t)
	h.must(t, http.StatusOK, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"}}`)
	for _, n := range []string{"a", "b"} {
		h.must(t, http.StatusCreated, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":"p","name":%q}`, n))
	}
	poll := func(query string) config.RuntimeChanges {
		t.Helper()
		var out config.RuntimeChanges
		if err := json.Unmarshal([]byte(h.must(t, http.StatusOK, "GET", "/v1/runtimes?"+query, "")), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := poll("volume=p/a&volume=p/b&volume=p/a&volume=p/nope&since=0")
	if len(first.Changes) != 2 || first.Revision == 0 {
		t.Fatalf("since 0: %+v, want p/a and p/b once each", first)
	}
	// Nothing changed: the wait runs out with no changes.
	if idle := poll(fmt.Sprintf("volume=p/a&since=%d&wait=200ms", first.Revision)); len(idle.Changes) != 0 || idle.Revision < first.Revision {
		t.Fatalf("idle poll: %+v", idle)
	}
	got := make(chan config.RuntimeChanges, 1)
	go func() {
		var out config.RuntimeChanges
		code, body := h.do(t, "GET", fmt.Sprintf("/v1/runtimes?volume=p/a&since=%d&wait=30s", first.Revision), "")
		if code == http.StatusOK {
			_ = json.Unmarshal([]byte(body), &out)
		}
		got <- out
	}()
	// A change of an unwatched volume does not answer the poll; the
	// watched one's does, with its new options.
	h.must(t, http.StatusOK, "PUT", "/v1/volumes/p/b/runtime", `{"rate-limit":{"write-bps":"1MB"}}`)
	h.must(t, http.StatusOK, "PUT", "/v1/volumes/p/a/runtime", `{"rate-limit":{"write-bps":"2MB"}}`)
	res := <-got
	if len(res.Changes) != 1 || res.Changes[0].VolumeRef != (config.VolumeRef{Policy: "p", Name: "a"}) ||
		res.Changes[0].Runtime.RateLimit.WriteBPS != 2<<20 || res.Revision < res.Changes[0].Revision {
		t.Fatalf("poll after the change of p/a: %+v", res)
	}

	for _, q := range []string{"volume=p", "volume=p/a&since=-1", "volume=p/a&since=x", "volume=p/a&wait=2m",
		"volume=p/a&wait=soon", "volume=p/a&detail=true"} {
		h.must(t, http.StatusBadRequest, "GET", "/v1/runtimes?"+q, "")
	}
}
