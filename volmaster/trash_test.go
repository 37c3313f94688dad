package volmaster

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// The trash routes: a remove answers with the trash entry, the entry is
// listed, restored (not over a live volume), purged; bad input is 400.
func TestTrashRoutes(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"}}`)
	h.must(t, 200, "PUT", "/v1/policies/e", `{"backend":"local","create":{"size":"10MB"},"ephemeral":true}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"e","name":"x"}`)
	h.must(t, 400, "DELETE", "/v1/volumes/p/v?unprotect=maybe", "")
	var e config.TrashEntry
	if err := json.Unmarshal([]byte(h.must(t, 200, "DELETE", "/v1/volumes/p/v", "")), &e); err != nil || e.Ref().String() != "p/v" {
		t.Fatalf("remove answered %+v, %v", e, err)
	}
	h.must(t, 204, "DELETE", "/v1/volumes/e/x", "") // ephemeral: destroyed
	var list []config.TrashEntry
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/trash", "")), &list)
	if len(list) != 1 || list[0].ID != e.ID {
		t.Fatalf("trash = %+v, want p/v %s only", list, e.ID)
	}
	for _, q := range []string{"?policy=e", "?policy=p&name=w"} {
		if body := h.must(t, 200, "GET", "/v1/trash"+q, ""); strings.TrimSpace(body) != "[]" {
			t.Errorf("GET /v1/trash%s = %s", q, body)
		}
	}
	for _, q := range []string{"?name=v", "?policy=a/b", "?nope=1"} {
		h.must(t, 400, "GET", "/v1/trash"+q, "")
	}
	path := "/v1/trash/p/v/" + e.ID
	h.must(t, 400, "POST", "/v1/trash/p/v/yesterday/restore", "")
	h.must(t, 404, "POST", "/v1/trash/p/v/20200101T000000.000000Z/restore", "")
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	if body := h.must(t, 409, "POST", path+"/restore", ""); !strings.Contains(body, "a volume named p/v exists") {
		t.Errorf("restore over a live volume: %s", body)
	}
	h.must(t, 204, "DELETE", "/v1/volumes/p/v?force=true", "")
	// The forced remove left the new image: the restore is refused and
	// rolled back, the entry stays.
	if body := h.must(t, 409, "POST", path+"/restore", ""); !strings.Contains(body, "without a volume record") {
		t.Errorf("restore over an image without a record: %s", body)
	}
	h.must(t, 404, "GET", "/v1/volumes/p/v", "")
	h.must(t, 204, "DELETE", path, "")
	h.must(t, 404, "DELETE", path, "")
	h.must(t, 404, "POST", path+"/restore", "")
	if body := h.must(t, 200, "GET", "/v1/trash", ""); strings.TrimSpace(body) != "[]" {
		t.Errorf("trash after the purge: %s", body)
	}
}

// A protected volume: refused (409 protected) without unprotect, forced or
// not; removed with it.
func TestRemoveProtected(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"}}`)
	h.must(t, 400, "POST", "/v1/volumes", `{"policy":"p","name":"x","options":{"protect":"true","ephemeral":"true"}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v","options":{"protect":"true"}}`)
	for _, q := range []string{"", "?force=true"} {
		if body := h.must(t, 409, "DELETE", "/v1/volumes/p/v"+q, ""); !strings.Contains(body, `"code":"protected"`) ||
			!strings.Contains(body, "volcli volume remove --unprotect p/v") {
			t.Errorf("DELETE%s of a protected volume: %s", q, body)
		}
	}
	h.must(t, 200, "DELETE", "/v1/volumes/p/v?unprotect=true", "")
}

// unprotect=true is refused for host tokens: docker volume rm never removes
// a protected volume, whatever a host sends; a tenant of the policy may.
func TestUnprotectIsNotForHosts(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v","options":{"protect":"true"}}`)
	before := h.dump(t)
	if code, body := h.as(t, "host-pa", "DELETE", "/v1/volumes/a/v?unprotect=true", ""); code != 403 || !strings.Contains(body, "not for host tokens") {
		t.Errorf("host DELETE ?unprotect=true = %d %s, want 403", code, body)
	}
	if body := h.mustAs(t, "host-pa", 409, "DELETE", "/v1/volumes/a/v", ""); !strings.Contains(body, "volcli volume remove --unprotect a/v") {
		t.Errorf("host DELETE of a protected volume: %s", body)
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Error("refused removes changed etcd")
	}
	h.mustAs(t, "tenant-a", 200, "DELETE", "/v1/volumes/a/v?unprotect=true", "")
}
