package volmaster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

func (h *harness) lease(t *testing.T, host string) config.HostLease {
	t.Helper()
	var l config.HostLease
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/leases", fmt.Sprintf(`{"host":%q}`, host))), &l)
	return l
}

func (h *harness) reclaimable(t *testing.T) map[string]config.Reclaimable {
	t.Helper()
	var rs []config.Reclaimable
	if err := json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/reclaimable", "")), &rs); err != nil {
		t.Fatal(err)
	}
	out := map[string]config.Reclaimable{}
	for _, r := range rs {
		out[r.Volume.String()] = r
	}
	return out
}

// Invariant 4 for a user's remove: refused while mounted, and while the last
// mount has no recorded unmount (its host died), with the host and the
// command that clears it; after volcli use force-remove recorded the unmount
// it goes at once (no grace), as after an ordinary release. --force keeps
// removing only the record, whatever the mounts.
func TestRemoveNeedsRecordedUnmount(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1ns"}}`)
	h.must(t, 200, "PUT", "/v1/policies/e", `{"backend":"local","create":{"size":"10MB"},"ephemeral":true}`)
	for _, ref := range []string{"p/v", "p/rm", "p/forced", "e/eph"} {
		p, n, _ := strings.Cut(ref, "/")
		h.must(t, 201, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":%q,"name":%q}`, p, n))
	}
	l := h.lease(t, "node7")
	for _, ref := range []string{"p/v", "p/rm", "p/forced", "e/eph"} {
		h.must(t, 200, "PUT", "/v1/uses/"+ref, fmt.Sprintf(`{"hostname":"node7","lease":%d,"mount-id":"m"}`, l.ID))
	}
	// docker run --rm ...; docker volume rm: released, then removed at once.
	h.must(t, 200, "DELETE", "/v1/uses/p/rm/mounts/m?host=node7", "")
	h.must(t, 200, "DELETE", "/v1/volumes/p/rm", "")

	if code, body := h.do(t, "DELETE", "/v1/volumes/p/v", ""); code != 409 || !strings.Contains(body, "node7") {
		t.Fatalf("remove while mounted = %d %s", code, body)
	}
	// node7 is killed: its lease expires, its locks go, nothing is released.
	h.must(t, 204, "DELETE", fmt.Sprintf("/v1/leases/%d", l.ID), "")
	code, body := h.do(t, "DELETE", "/v1/volumes/p/v", "")
	if code != 409 || !strings.Contains(body, `\"node7\"`) || !strings.Contains(body, "volcli use force-remove p/v") ||
		!strings.Contains(body, `"code":"in-use"`) {
		t.Fatalf("remove after the host died = %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "images", "p", "v.img")); err != nil {
		t.Fatalf("image of the refused remove: %v", err)
	}
	rs := h.reclaimable(t)
	if r := rs["p/v"]; r.State != config.StateUnproven || r.Host != "node7" || r.Ready || r.WillRemove ||
		!strings.Contains(r.Reason, "volcli use force-remove p/v") {
		t.Errorf("reclaimable p/v = %+v", r)
	}
	if r, ok := rs["e/eph"]; !ok || r.State != config.StateUnproven || !r.Ephemeral || r.Host != "node7" {
		t.Errorf("the ephemeral volume whose host died is not listed as in use until proven unmounted: %+v", rs)
	}

	// --force removes the record whatever the mounts (the image stays).
	h.must(t, 204, "DELETE", "/v1/volumes/p/forced?force=true", "")
	if _, err := os.Stat(filepath.Join(h.dataDir, "images", "p", "forced.img")); err != nil {
		t.Errorf("force remove touched the image: %v", err)
	}

	// The operator checked node7 and records the unmount.
	h.must(t, 204, "DELETE", "/v1/uses/p/v", "")
	h.must(t, 404, "DELETE", "/v1/uses/p/v", "")
	if r := h.reclaimable(t)["p/v"]; r.State != config.StateUnmounted || r.Ready || r.NotBefore.IsZero() ||
		!strings.Contains(r.Reason, "twice the lease TTL") {
		t.Errorf("reclaimable p/v after the recorded unmount = %+v", r)
	}
	h.must(t, 200, "DELETE", "/v1/volumes/p/v", "")
	if _, err := os.Stat(filepath.Join(h.dataDir, "images", "p", "v.img")); !os.IsNotExist(err) {
		t.Errorf("image after remove: %v", err)
	}
	// Nothing of it left but its trash entry.
	for k := range h.dump(t) {
		if strings.Contains(k, "/p/v") && !strings.HasPrefix(k, "/volplugin/trash/p/v/") {
			t.Errorf("%s left after remove", k)
		}
	}
}

// unlocked only on nfs, never with ephemeral or reclaim; a volume stored
// before the rule still reads, and a remove of it is not refused for lack of
// a usage record.
func TestUnlockedValidation(t *testing.T) {
	h := start(t)
	for _, doc := range []string{
		`{"backend":"local","create":{"size":"10MB"},"unlocked":true}`,
		`{"backend":"ceph","create":{"size":"10MB"},"unlocked":true}`,
		`{"backend":"nfs","unlocked":true,"ephemeral":true}`,
		`{"backend":"nfs","unlocked":true,"reclaim":{"unused-for":"1h"}}`,
	} {
		if code, body := h.do(t, "PUT", "/v1/policies/bad", doc); code != 400 || !strings.Contains(body, "unlocked") {
			t.Errorf("PUT %s = %d %s", doc, code, body)
		}
	}
	h.must(t, 200, "PUT", "/v1/policies/shared", `{"backend":"nfs","unlocked":true,"driver":{"options":{"source":"srv:/export"}}}`)
	if code, body := h.do(t, "POST", "/v1/volumes", `{"policy":"shared","name":"s","options":{"ephemeral":"true"}}`); code != 400 ||
		!strings.Contains(body, "unlocked cannot be combined with ephemeral") {
		t.Errorf("ephemeral unlocked volume = %d %s", code, body)
	}
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"shared","name":"s"}`)

	h.must(t, 200, "PUT", "/v1/policies/old", `{"backend":"local","create":{"size":"10MB"},"ephemeral":true,"reclaim":{"unused-for":"1ns","enabled":true}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"old","name":"u"}`)
	ref := config.VolumeRef{Policy: "old", Name: "u"}
	h.storeLegacyUnlocked(t, ref)
	var v config.Volume
	if err := json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/old/u", "")), &v); err != nil || !v.Unlocked {
		t.Fatalf("stored unlocked volume reads as %+v, %v", v, err)
	}
	if r := h.reclaimable(t)["old/u"]; r.State != config.StateUnlocked || r.WillRemove || r.Ready {
		t.Errorf("reclaimable unlocked volume = %+v", r)
	}
	h.must(t, 204, "DELETE", "/v1/volumes/old/u", "") // ephemeral: destroyed
}
