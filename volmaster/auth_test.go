package volmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

type authHarness struct {
	*harness
	tokens map[string]string // role name -> bearer
}

func startAuth(t *testing.T) *authHarness {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	dataDir := t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Client: cli, Keys: keys, Log: quietLog(), Auth: true,
		Backends: map[string]storage.CRUD{config.BackendLocal: lb}, Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	h := &authHarness{harness: &harness{srv: srv, url: ts.URL, dataDir: dataDir}, tokens: map[string]string{}}
	for name, req := range map[string]config.TokenRequest{
		"admin": {Role: config.RoleAdmin}, "read-only": {Role: config.RoleReadOnly}, "host": {Role: config.RoleHost},
		"tenant-a": {Role: config.RoleTenant, Policies: []string{"a"}}, "tenant-b": {Role: config.RoleTenant, Policies: []string{"b"}},
	} {
		nt, err := srv.Store().CreateToken(ctx, req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h.tokens[name] = nt.Secret
	}
	h.tokens["bad"] = strings.Repeat("0", 16) + ".nope"
	return h
}

func (h *authHarness) as(t *testing.T, who, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if tok := h.tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *authHarness) mustAs(t *testing.T, who string, want int, method, path, body string) string {
	t.Helper()
	code, out := h.as(t, who, method, path, body)
	if code != want {
		t.Fatalf("%s %s %s as %s: %d, want %d: %s", method, path, body, who, code, want, out)
	}
	return out
}

// Every mutating route, called with no token, a bad token, a read-only
// token and a tenant of another policy, is refused (401/403) and changes
// nothing in etcd; the right role succeeds.
func TestAuthMatrix(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/x", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	var snap config.Snapshot
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/volumes/a/v/snapshots", `{}`)), &snap)
	var lease config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &lease)
	lockBody := fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m1"}`, lease.ID)
	var victim config.NewToken
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/tokens", `{"role":"read-only"}`)), &victim)

	type call struct {
		method, path, body string
		ok                 string // the role that succeeds
		setup              func() // makes the object the successful call consumes
	}
	calls := map[string]call{
		"PUT /v1/policies/{policy}":                              {"PUT", "/v1/policies/a", localPolicy, "admin", nil},
		"DELETE /v1/policies/{policy}":                           {"DELETE", "/v1/policies/x", "", "admin", nil},
		"POST /v1/volumes":                                       {"POST", "/v1/volumes", `{"policy":"a","name":"n1"}`, "tenant-a", nil},
		"DELETE /v1/volumes/{policy}/{name}":                     {"DELETE", "/v1/volumes/a/n1", "", "tenant-a", nil}, // made by POST above
		"POST /v1/volumes/{policy}/{name}/snapshots":             {"POST", "/v1/volumes/a/v/snapshots", `{}`, "tenant-a", nil},
		"POST /v1/volumes/{policy}/{name}/snapshots/{snap}/copy": {"POST", "/v1/volumes/a/v/snapshots/" + snap.Name + "/copy", `{"name":"c"}`, "tenant-a", nil},
		"PUT /v1/volumes/{policy}/{name}/runtime":                {"PUT", "/v1/volumes/a/v/runtime", `{"snapshots":false}`, "tenant-a", nil},
		"PUT /v1/global":                                         {"PUT", "/v1/global", `{"TTL":20}`, "admin", nil},
		"PUT /v1/uses/{policy}/{name}":                           {"PUT", "/v1/uses/a/v", lockBody, "host", nil},
		"DELETE /v1/uses/{policy}/{name}/mounts/{id}":            {"DELETE", "/v1/uses/a/v/mounts/m1?host=h1", "", "host", func() { h.mustAs(t, "host", 200, "PUT", "/v1/uses/a/v", lockBody) }},
		"DELETE /v1/uses/{policy}/{name}":                        {"DELETE", "/v1/uses/a/v", "", "admin", func() { h.mustAs(t, "host", 200, "PUT", "/v1/uses/a/v", lockBody) }},
		"POST /v1/leases":                                        {"POST", "/v1/leases", `{"host":"h2"}`, "host", nil},
		"PUT /v1/leases/{id}":                                    {"PUT", fmt.Sprintf("/v1/leases/%d", lease.ID), `{}`, "host", nil},
		"DELETE /v1/leases/{id}":                                 {"DELETE", fmt.Sprintf("/v1/leases/%d", lease.ID), "", "host", nil},
		"POST /v1/tokens":                                        {"POST", "/v1/tokens", `{"role":"host"}`, "admin", nil},
		"DELETE /v1/tokens/{id}":                                 {"DELETE", "/v1/tokens/" + victim.ID, "", "admin", nil},
	}
	// The order matters only where one call consumes another's object.
	order := []string{
		"PUT /v1/policies/{policy}", "DELETE /v1/policies/{policy}", "POST /v1/volumes", "DELETE /v1/volumes/{policy}/{name}",
		"POST /v1/volumes/{policy}/{name}/snapshots", "POST /v1/volumes/{policy}/{name}/snapshots/{snap}/copy",
		"PUT /v1/volumes/{policy}/{name}/runtime", "PUT /v1/global", "PUT /v1/uses/{policy}/{name}",
		"DELETE /v1/uses/{policy}/{name}/mounts/{id}", "DELETE /v1/uses/{policy}/{name}", "POST /v1/leases",
		"PUT /v1/leases/{id}", "DELETE /v1/leases/{id}", "POST /v1/tokens", "DELETE /v1/tokens/{id}",
	}
	for _, rt := range Routes() {
		if rt.Method == "GET" {
			continue
		}
		if _, ok := calls[rt.Method+" "+rt.Path]; !ok {
			t.Errorf("mutating route %s %s has no case in the auth matrix", rt.Method, rt.Path)
		}
	}
	for _, name := range order {
		c := calls[name]
		if c.setup != nil {
			c.setup()
		}
		for _, who := range []string{"", "bad", "read-only", "tenant-b"} {
			if who == "tenant-b" && c.ok == "host" {
				who = "tenant-a" // tenants are not hosts either
			}
			before := h.dump(t)
			code, body := h.as(t, who, c.method, c.path, c.body)
			want := http.StatusForbidden
			if who == "" || who == "bad" {
				want = http.StatusUnauthorized
			}
			if code != want {
				t.Errorf("%s as %q: %d, want %d: %s", name, who, code, want, body)
			}
			if after := h.dump(t); !reflect.DeepEqual(before, after) {
				t.Errorf("%s as %q changed etcd", name, who)
			}
		}
		if code, body := h.as(t, c.ok, c.method, c.path, c.body); code >= 300 {
			t.Errorf("%s as %s: %d: %s", name, c.ok, code, body)
		}
	}
	// Reads: a tenant sees only its own policies' objects; public routes
	// need no token.
	h.mustAs(t, "tenant-a", 200, "GET", "/v1/volumes/a/v", "")
	h.mustAs(t, "tenant-b", 403, "GET", "/v1/volumes/a/v", "")
	h.mustAs(t, "tenant-a", 403, "GET", "/v1/volumes", "")
	h.mustAs(t, "read-only", 200, "GET", "/v1/volumes", "")
	h.mustAs(t, "", 401, "GET", "/v1/volumes", "")
	h.mustAs(t, "", 200, "GET", "/healthz", "")
	h.mustAs(t, "read-only", 403, "GET", "/v1/audit", "")
	var audit []auditEntry
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "GET", "/v1/audit", "")), &audit)
	if len(audit) < 40 {
		t.Errorf("audit kept %d entries", len(audit))
	}
	var sawRefusal, sawSuccess bool
	for _, e := range audit {
		sawRefusal = sawRefusal || (e.Status == 403 && e.Role == "read-only")
		sawSuccess = sawSuccess || (e.Status == 201 && e.Route == "/v1/volumes" && e.Role == "tenant")
	}
	if !sawRefusal || !sawSuccess {
		t.Errorf("audit lacks a refusal or a success: %+v", audit[len(audit)-3:])
	}
}
