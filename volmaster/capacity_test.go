package volmaster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// GET /v1/policies/{policy}/capacity reports the local data dir's free
// space; a mount-only policy, a policy whose backend is not configured and
// a missing policy are refused with their own codes; a tenant reads only its
// own policies' capacity.
func TestCapacity(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	var c config.Capacity
	if err := json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/policies/p/capacity", "")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Policy != "p" || c.Backend != config.BackendLocal || c.AvailableBytes <= 0 {
		t.Errorf("capacity = %+v", c)
	}
	if id, err := local.ReadStoreID(h.dataDir); err != nil || c.Store != local.StorePrefix+id {
		t.Errorf("store %q; the data dir's identity is %q (%v)", c.Store, id, err)
	}
	h.must(t, 200, "PUT", "/v1/policies/n", `{"backend":"nfs","driver":{"options":{"source":"srv:/x"}}}`)
	if out := h.must(t, 400, "GET", "/v1/policies/n/capacity", ""); !strings.Contains(out, "nfs") {
		t.Errorf("capacity of an nfs policy: %s", out)
	}
	h.must(t, 200, "PUT", "/v1/policies/c", `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"10MB"}}`)
	h.must(t, 503, "GET", "/v1/policies/c/capacity", "")
	h.must(t, 404, "GET", "/v1/policies/missing/capacity", "")
	h.must(t, 400, "GET", "/v1/policies/a%20b/capacity", "")
}

func TestCapacityAuth(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "tenant-a", 200, "GET", "/v1/policies/a/capacity", "")
	h.mustAs(t, "read-only", 200, "GET", "/v1/policies/a/capacity", "")
	h.mustAs(t, "tenant-b", 403, "GET", "/v1/policies/a/capacity", "")
	h.mustAs(t, "", 401, "GET", "/v1/policies/a/capacity", "")
}
