package volmaster

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// A policy's limits hold whoever creates or changes its volumes: sizes at
// upload, create (-o size), resize and copy; the count and total size, also
// for creates racing each other; snapshot frequency and keep in options and
// runtime uploads; and on-demand snapshots are pruned to max-keep. Every
// refusal is a 400 naming the limit and changes nothing.
func TestPolicyLimits(t *testing.T) {
	h := start(t)
	const limits = `"limits":{"max-size":"30MB","max-volumes":2,"max-total-size":"45MB","min-snapshot-frequency":"1h","max-keep":3}`
	refused := func(method, path, body, want string) {
		t.Helper()
		before := h.dump(t)
		code, out := h.do(t, method, path, body)
		if code != 400 || !strings.Contains(out, want) {
			t.Errorf("%s %s %s = %d %s, want 400 naming %s", method, path, body, code, out, want)
		}
		if after := h.dump(t); !reflect.DeepEqual(before, after) {
			t.Errorf("refused %s %s changed etcd", method, path)
		}
	}
	refused("PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"40MB"},`+limits+`}`, "max-size")
	refused("PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"30m","keep":2}},`+limits+`}`, "min-snapshot-frequency")
	refused("PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1h","keep":2,"tiers":{"daily":2}}},`+limits+`}`, "max-keep")
	refused("PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"limits":{"max-size":"lots"}}`, "max-size")
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},`+limits+`}`)

	refused("POST", "/v1/volumes", `{"policy":"p","name":"big","options":{"size":"31MB"}}`, "max-size")
	refused("POST", "/v1/volumes", `{"policy":"p","name":"often","options":{"snapshots":"true","snapshot.frequency":"1m","snapshot.keep":"1"}}`, "min-snapshot-frequency")
	refused("POST", "/v1/volumes", `{"policy":"p","name":"hoard","options":{"snapshots":"true","snapshot.frequency":"1h","snapshot.keep":"4"}}`, "max-keep")
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v1"}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v2","options":{"size":"30MB"}}`)
	refused("POST", "/v1/volumes", `{"policy":"p","name":"v3"}`, "max-volumes")
	refused("POST", "/v1/volumes/p/v1/resize", `{"size":"16MB"}`, "max-total-size")
	refused("POST", "/v1/volumes/p/v2/resize", `{"size":"31MB"}`, "max-size")
	h.must(t, 200, "POST", "/v1/volumes/p/v1/resize", `{"size":"15MB"}`)

	refused("PUT", "/v1/volumes/p/v1/runtime", `{"snapshots":true,"snapshot":{"frequency":"1ns","keep":1}}`, "shorter than 1s")
	refused("PUT", "/v1/volumes/p/v1/runtime", `{"snapshots":true,"snapshot":{"frequency":"59m","keep":1}}`, "min-snapshot-frequency")
	refused("PUT", "/v1/volumes/p/v1/runtime", `{"snapshots":true,"snapshot":{"frequency":"1h","keep":18446744073709551615}}`, "max-keep")
	h.must(t, 200, "PUT", "/v1/volumes/p/v1/runtime", `{"snapshots":true,"snapshot":{"frequency":"1h","keep":3}}`)

	// On-demand snapshots count against max-keep, even with snapshots off
	// and keep 0 (keep everything).
	h.must(t, 200, "PUT", "/v1/volumes/p/v1/runtime", `{"snapshots":false}`)
	for range 5 {
		h.must(t, 201, "POST", "/v1/volumes/p/v1/snapshots", "{}")
	}
	var snaps []config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v1/snapshots", "")), &snaps)
	if len(snaps) != 3 {
		t.Errorf("%d snapshots kept after 5 on demand, want max-keep 3", len(snaps))
	}

	// Creates racing for the last places: exactly max-volumes win.
	h.must(t, 200, "PUT", "/v1/policies/q", `{"backend":"local","create":{"size":"1MB"},"limits":{"max-volumes":3}}`)
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = h.do(t, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":"q","name":"r%d"}`, i))
		}()
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		if c == 201 {
			won++
		} else if c != 400 && c != 409 {
			t.Errorf("racing create = %d", c)
		}
	}
	var refs []config.VolumeRef
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/q", "")), &refs)
	if won != 3 || len(refs) != 3 {
		t.Errorf("%d racing creates won, %d volumes exist; want 3 (codes %v)", won, len(refs), codes)
	}
}
