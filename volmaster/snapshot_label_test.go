package volmaster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// TestLabelledSnapshots: a labelled snapshot (volcsi's) is taken once per
// label, survives the pruning of on-demand snapshots, counts against
// max-keep, and goes only when removed; removing is 404 once it is gone.
func TestLabelledSnapshots(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"1MB"},"limits":{"max-keep":2}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	var first, again config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{"label":"snap-a"}`)), &first)
	_ = json.Unmarshal([]byte(h.must(t, 200, "POST", "/v1/volumes/p/v/snapshots", `{"label":"snap-a"}`)), &again)
	if first.Label != "snap-a" || again.Name != first.Name {
		t.Fatalf("repeated labelled take: %+v then %+v, want the same snapshot", first, again)
	}
	// On-demand snapshots are pruned to max-keep; the labelled one stays.
	for range 3 {
		h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", "{}")
	}
	list := func() []config.Snapshot {
		var snaps []config.Snapshot
		_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v/snapshots", "")), &snaps)
		return snaps
	}
	snaps := list()
	if len(snaps) != 3 || snaps[0].Name != first.Name {
		t.Errorf("after 3 on-demand snapshots at max-keep 2: %+v, want the labelled one and 2 others", snaps)
	}
	h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{"label":"snap-b"}`)
	if code, body := h.do(t, "POST", "/v1/volumes/p/v/snapshots", `{"label":"snap-c"}`); code != 400 || !strings.Contains(body, "max-keep") {
		t.Errorf("a third labelled snapshot at max-keep 2: %d %s, want 400 naming max-keep", code, body)
	}
	for _, bad := range []string{`{"label":"a/b"}`, `{"colour":"red"}`} {
		h.must(t, 400, "POST", "/v1/volumes/p/v/snapshots", bad)
	}
	h.must(t, 204, "DELETE", "/v1/volumes/p/v/snapshots/"+first.Name, "")
	h.must(t, 404, "DELETE", "/v1/volumes/p/v/snapshots/"+first.Name, "")
	h.must(t, 400, "DELETE", "/v1/volumes/p/v/snapshots/yesterday", "")
	for _, s := range list() {
		if s.Name == first.Name {
			t.Errorf("removed snapshot %s still listed", s.Name)
		}
	}
}
