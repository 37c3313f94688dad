package volmaster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
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
	srv, url := serve(t, Config{Client: cli, Keys: keys, Auth: true,
		Backends: map[string]storage.CRUD{config.BackendLocal: lb}, Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb}})
	ctx := context.Background()
	h := &authHarness{harness: &harness{srv: srv, url: url, dataDir: dataDir}, tokens: map[string]string{}}
	for name, req := range map[string]config.TokenRequest{
		"admin": {Role: config.RoleAdmin}, "read-only": {Role: config.RoleReadOnly},
		"host": {Role: config.RoleHost, Host: "h1"}, "host-h2": {Role: config.RoleHost, Host: "h2"},
		"host-pa":  {Role: config.RoleHost, Host: "h1", Policies: []string{"a"}},
		"tenant-a": {Role: config.RoleTenant, Policies: []string{"a"}}, "tenant-b": {Role: config.RoleTenant, Policies: []string{"b"}},
	} {
		nt, err := srv.Store().CreateToken(ctx, req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h.tokens[name] = nt.Secret
	}
	h.tokens["bad"] = strings.Repeat("0", 16) + ".nope"
	h.tokens["host-old"] = h.storeLegacyHostToken(t)
	return h
}

// storeLegacyHostToken writes a host token as stored before host tokens
// named their host (no "host" field), which CreateToken no longer makes,
// and returns its bearer string.
func (h *authHarness) storeLegacyHostToken(t *testing.T) string {
	t.Helper()
	const id, secret = "0123456789abcdef", "legacy-secret"
	sum := sha256.Sum256([]byte(secret))
	b, _ := json.Marshal(config.Token{ID: id, Hash: hex.EncodeToString(sum[:]), Role: config.RoleHost, Created: time.Now()})
	if _, err := h.srv.Store().Client().Put(context.Background(), h.srv.Store().Keys().Token(id), string(b)); err != nil {
		t.Fatal(err)
	}
	return id + "." + secret
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
// nothing in etcd; a Host route also refuses the host token of another host
// (naming both hosts); the right role succeeds.
func TestAuthMatrix(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/x", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	var snap config.Snapshot
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/volumes/a/v/snapshots", `{}`)), &snap)
	var labelled config.Snapshot
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/volumes/a/v/snapshots", `{"label":"gone"}`)), &labelled)
	var lease config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &lease)
	lockBody := fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m1"}`, lease.ID)
	var victim config.NewToken
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/tokens", `{"role":"read-only"}`)), &victim)
	// Two volumes in the trash: one to restore, one to purge.
	trashed := map[string]string{}
	for _, n := range []string{"t1", "t2"} {
		h.mustAs(t, "admin", 201, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":"a","name":%q}`, n))
		var e config.TrashEntry
		_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "DELETE", "/v1/volumes/a/"+n, "")), &e)
		trashed[n] = "/v1/trash/a/" + n + "/" + e.ID
	}

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
		"DELETE /v1/volumes/{policy}/{name}/snapshots/{snap}":    {"DELETE", "/v1/volumes/a/v/snapshots/" + labelled.Name, "", "tenant-a", nil},
		"PUT /v1/volumes/{policy}/{name}/runtime":                {"PUT", "/v1/volumes/a/v/runtime", `{"snapshots":false}`, "tenant-a", nil},
		"POST /v1/volumes/{policy}/{name}/resize":                {"POST", "/v1/volumes/a/v/resize", `{"size":"20MB"}`, "tenant-a", nil},
		"PUT /v1/global":                                         {"PUT", "/v1/global", `{"TTL":20}`, "admin", nil},
		"PUT /v1/uses/{policy}/{name}":                           {"PUT", "/v1/uses/a/v", lockBody, "host", nil},
		"PUT /v1/volumes/{policy}/{name}/formatted":              {"PUT", "/v1/volumes/a/v/formatted", `{"host":"h1"}`, "host", nil}, // h1 holds the lock (PUT /v1/uses above)
		"DELETE /v1/uses/{policy}/{name}/mounts/{id}":            {"DELETE", "/v1/uses/a/v/mounts/m1?host=h1", "", "host", func() { h.mustAs(t, "host", 200, "PUT", "/v1/uses/a/v", lockBody) }},
		"DELETE /v1/uses/{policy}/{name}":                        {"DELETE", "/v1/uses/a/v", "", "admin", func() { h.mustAs(t, "host", 200, "PUT", "/v1/uses/a/v", lockBody) }},
		"POST /v1/leases":                                        {"POST", "/v1/leases", `{"host":"h2"}`, "host-h2", nil},
		"PUT /v1/leases/{id}":                                    {"PUT", fmt.Sprintf("/v1/leases/%d", lease.ID), `{}`, "host", nil},
		"DELETE /v1/leases/{id}":                                 {"DELETE", fmt.Sprintf("/v1/leases/%d", lease.ID), "", "host", nil},
		"POST /v1/tokens":                                        {"POST", "/v1/tokens", `{"role":"host","host":"h9"}`, "admin", nil},
		"DELETE /v1/tokens/{id}":                                 {"DELETE", "/v1/tokens/" + victim.ID, "", "admin", nil},
		"POST /v1/trash/{policy}/{name}/{id}/restore":            {"POST", trashed["t1"] + "/restore", "", "tenant-a", nil},
		"DELETE /v1/trash/{policy}/{name}/{id}":                  {"DELETE", trashed["t2"], "", "tenant-a", nil},
		"POST /v1/import/global":                                 {"POST", "/v1/import/global", `{"TTL":20}`, "admin", nil},
		"POST /v1/import/policies/{policy}": {"POST", "/v1/import/policies/imp",
			`{"revisions":[{"time":"2017-01-01T00:00:00Z","policy":{"backend":"local","create":{"size":"10MB"}}}]}`, "admin", nil},
		"POST /v1/import/volumes/{policy}/{name}": {"POST", "/v1/import/volumes/a/imp",
			`{"volume":{"policy":"a","name":"imp","backends":{"crud":"local","mount":"local","snapshot":"local"},"create":{"size":"10MB","filesystem":"ext4"},"filesystems":{"ext4":["mkfs.ext4","%"]}}}`, "admin", nil},
	}
	// The order matters only where one call consumes another's object.
	order := []string{
		"PUT /v1/policies/{policy}", "DELETE /v1/policies/{policy}", "POST /v1/volumes", "DELETE /v1/volumes/{policy}/{name}",
		"POST /v1/volumes/{policy}/{name}/snapshots", "POST /v1/volumes/{policy}/{name}/snapshots/{snap}/copy",
		"DELETE /v1/volumes/{policy}/{name}/snapshots/{snap}",
		"PUT /v1/volumes/{policy}/{name}/runtime", "POST /v1/volumes/{policy}/{name}/resize", "PUT /v1/global", "PUT /v1/uses/{policy}/{name}",
		"PUT /v1/volumes/{policy}/{name}/formatted",
		"DELETE /v1/uses/{policy}/{name}/mounts/{id}", "DELETE /v1/uses/{policy}/{name}", "POST /v1/leases",
		"PUT /v1/leases/{id}", "DELETE /v1/leases/{id}", "POST /v1/tokens", "DELETE /v1/tokens/{id}",
		"POST /v1/trash/{policy}/{name}/{id}/restore", "DELETE /v1/trash/{policy}/{name}/{id}",
		"POST /v1/import/global", "POST /v1/import/policies/{policy}", "POST /v1/import/volumes/{policy}/{name}",
	}
	hostRoute := map[string]bool{}
	for _, rt := range Routes() {
		if rt.Access == Host {
			hostRoute[rt.Method+" "+rt.Path] = true
			if rt.owner == nil {
				t.Errorf("host route %s %s declares no owner function", rt.Method, rt.Path)
			}
		}
		if rt.Method == "GET" || rt.Access == List || rt.Access == Read {
			continue
		}
		if _, ok := calls[rt.Method+" "+rt.Path]; !ok {
			t.Errorf("mutating route %s %s has no case in the auth matrix", rt.Method, rt.Path)
		}
	}
	otherHost := map[string]string{"host": "host-h2", "host-h2": "host"}
	for _, name := range order {
		c := calls[name]
		if c.setup != nil {
			c.setup()
		}
		refused := []string{"", "bad", "read-only", "tenant-b"}
		if c.ok == "host" || c.ok == "host-h2" {
			refused = []string{"", "bad", "read-only", "tenant-a", otherHost[c.ok]}
		}
		if hostRoute[name] != (len(refused) == 5) {
			t.Errorf("%s: host route %v, but its case succeeds as %s", name, hostRoute[name], c.ok)
		}
		for _, who := range refused {
			before := h.dump(t)
			code, body := h.as(t, who, c.method, c.path, c.body)
			want := http.StatusForbidden
			if who == "" || who == "bad" {
				want = http.StatusUnauthorized
			}
			if code != want {
				t.Errorf("%s as %q: %d, want %d: %s", name, who, code, want, body)
			}
			switch who {
			case "host", "host-h2":
				if !strings.Contains(body, `\"h1\"`) || !strings.Contains(body, `\"h2\"`) {
					t.Errorf("%s as %s: the refusal does not name both hosts: %s", name, who, body)
				}
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
	h.mustAs(t, "read-only", 200, "GET", "/v1/volumes", "")
	h.mustAs(t, "host-old", 200, "GET", "/v1/volumes", "")
	h.mustAs(t, "", 401, "GET", "/v1/volumes", "")
	h.mustAs(t, "", 200, "GET", "/healthz", "")
	h.mustAs(t, "read-only", 403, "GET", "/v1/audit", "")
	var audit, refused []config.AuditEntry
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "GET", "/v1/audit", "")), &audit)
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "GET", "/v1/audit?refused=true", "")), &refused)
	if len(audit) < 10 || len(refused) < 10 {
		t.Errorf("audit kept %d entries and %d refusals", len(audit), len(refused))
	}
	var sawRefusal, sawSuccess, sawHostRefusal bool
	for _, e := range refused {
		sawRefusal = sawRefusal || (e.Status == 403 && e.Role == "read-only")
		sawHostRefusal = sawHostRefusal || (e.Status == 403 && e.Role == "host" && e.Route == "/v1/leases/{id}")
		if e.Client != "127.0.0.1" {
			t.Errorf("refusal without its client address: %+v", e)
		}
	}
	for _, e := range audit {
		sawSuccess = sawSuccess || (e.Status == 201 && e.Route == "/v1/volumes" && e.Role == "tenant" && e.Client == "127.0.0.1")
		if e.Status == 401 || e.Status == 403 {
			t.Errorf("refusal among the audit entries: %+v", e)
		}
	}
	if !sawRefusal || !sawSuccess || !sawHostRefusal {
		t.Errorf("audit lacks a refusal (%v), a host refusal (%v) or a success (%v)", sawRefusal, sawHostRefusal, sawSuccess)
	}
}

// A host token acts only for its own host, whatever part of the request
// names another one: the lease in a mount request, the holder of the lock
// being released; a lease that is not (or no longer) its host's is refused,
// while an expired lease still gets its 404 so volplugin takes a new one.
func TestHostTokenScope(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"w"}`)
	var l1, l2 config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &l1)
	_ = json.Unmarshal([]byte(h.mustAs(t, "host-h2", 201, "POST", "/v1/leases", `{"host":"h2"}`)), &l2)

	refused := func(who, method, path, body string, want ...string) {
		t.Helper()
		before := h.dump(t)
		out := h.mustAs(t, who, 403, method, path, body)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s %s as %s: %s lacks %q", method, path, who, out, w)
			}
		}
		if after := h.dump(t); !reflect.DeepEqual(before, after) {
			t.Errorf("%s %s as %s changed etcd", method, path, who)
		}
	}
	// h1 names itself but hangs its lock on h2's lease.
	refused("host", "PUT", "/v1/uses/a/v", fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m"}`, l2.ID),
		fmt.Sprintf("lease %d belongs to host", l2.ID), "h2", "h1")
	// h2 holds a/w; h1 may not release it, even naming itself in ?host=.
	h.mustAs(t, "host-h2", 200, "PUT", "/v1/uses/a/w", fmt.Sprintf(`{"hostname":"h2","lease":%d,"mount-id":"m"}`, l2.ID))
	refused("host", "DELETE", "/v1/uses/a/w/mounts/m?host=h1", "", "the mount lock on a/w is held by host", "h2", "h1")
	refused("host", "DELETE", "/v1/uses/a/w/mounts/m?host=h2", "", "names host", "h2", "h1")
	h.mustAs(t, "host-h2", 200, "DELETE", "/v1/uses/a/w/mounts/m?host=h2", "")
	// Releasing a lock that is gone is still the no-op it always was.
	h.mustAs(t, "host", 200, "DELETE", "/v1/uses/a/w/mounts/m?host=h1", "")

	// A second grant moves h1's record to a new lease: the old one belongs
	// to no host and h1's token may no longer renew it.
	var l1b config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &l1b)
	refused("host", "PUT", fmt.Sprintf("/v1/leases/%d", l1.ID), `{}`, fmt.Sprintf("lease %d belongs to no host", l1.ID))
	h.mustAs(t, "host", 200, "PUT", fmt.Sprintf("/v1/leases/%d", l1b.ID), `{}`)
	h.mustAs(t, "admin", 204, "DELETE", fmt.Sprintf("/v1/leases/%d", l1.ID), "")
	// Expired or revoked: nothing to protect, the handler's 404 stands.
	h.mustAs(t, "host", 404, "PUT", fmt.Sprintf("/v1/leases/%d", l1.ID), `{}`)
	h.mustAs(t, "host", 204, "DELETE", fmt.Sprintf("/v1/leases/%d", l1.ID), "")

	// Bad input from a host token is a 400, not a 403.
	h.mustAs(t, "host", 400, "PUT", "/v1/leases/nope", `{}`)
	h.mustAs(t, "host", 400, "POST", "/v1/leases", `{"host":`)

	// Tokens: a host token needs its host, and only host tokens have one.
	for _, body := range []string{`{"role":"host"}`, `{"role":"host","host":"a/b"}`, `{"role":"admin","host":"h1"}`, `{"role":"tenant","policies":["a"],"host":"h1"}`} {
		h.mustAs(t, "admin", 400, "POST", "/v1/tokens", body)
	}
	var nt config.NewToken
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/tokens", `{"role":"host","host":"h3"}`)), &nt)
	var toks []config.Token
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "GET", "/v1/tokens", "")), &toks)
	found := false
	for _, tk := range toks {
		found = found || (tk.ID == nt.ID && tk.Host == "h3" && tk.Role == config.RoleHost)
	}
	if !found || nt.Host != "h3" {
		t.Errorf("token list lacks host h3's token: %+v", toks)
	}
}

// docker volume create/rm through volplugin: a host token issued with
// policies may create and remove volumes in those (and only those); one
// without may not change volumes at all. Mount locks stay host-scoped.
func TestHostTokenPolicies(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/b", localPolicy)
	refused := func(who, method, path, body, want string) {
		t.Helper()
		before := h.dump(t)
		if out := h.mustAs(t, who, 403, method, path, body); !strings.Contains(out, want) {
			t.Errorf("%s %s as %s: %s lacks %q", method, path, who, out, want)
		}
		if after := h.dump(t); !reflect.DeepEqual(before, after) {
			t.Errorf("%s %s as %s changed etcd", method, path, who)
		}
	}
	refused("host", "POST", "/v1/volumes", `{"policy":"a","name":"x"}`, "has no policies")
	refused("host-pa", "POST", "/v1/volumes", `{"policy":"b","name":"x"}`, "policy b is not one of the token's")
	h.mustAs(t, "host-pa", 201, "POST", "/v1/volumes", `{"policy":"a","name":"x"}`)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"b","name":"y"}`)
	refused("host-pa", "DELETE", "/v1/volumes/b/y", "", "policy b is not one of the token's")
	refused("host", "DELETE", "/v1/volumes/a/x", "", "has no policies")
	// Policies stay admin business for every host token.
	refused("host-pa", "PUT", "/v1/policies/a", localPolicy, "hosts may only")
	// Its host scope still holds: h1's token with policies is not h2's.
	refused("host-pa", "POST", "/v1/leases", `{"host":"h2"}`, "h2")
	h.mustAs(t, "host-pa", 200, "DELETE", "/v1/volumes/a/x", "")
	h.mustAs(t, "host-pa", 200, "GET", "/v1/volumes/b/y", "")
	// Issued and listed with both scopes.
	var nt config.NewToken
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 201, "POST", "/v1/tokens", `{"role":"host","host":"h3","policies":["a","b"]}`)), &nt)
	if nt.Host != "h3" || !reflect.DeepEqual(nt.Policies, []string{"a", "b"}) {
		t.Errorf("created host token: %+v", nt.Token)
	}
	h.mustAs(t, "admin", 400, "POST", "/v1/tokens", `{"role":"read-only","policies":["a"]}`)
}

// A host token stored before tokens named their host (volmaster upgraded
// under running volplugins, maybe one token shared by all of them) keeps
// acting for any host, so no running volplugin loses its lease; the token
// list flags it.
func TestLegacyHostTokenStaysUnscoped(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	var l1, l2 config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &l1)
	_ = json.Unmarshal([]byte(h.mustAs(t, "host-h2", 201, "POST", "/v1/leases", `{"host":"h2"}`)), &l2)
	h.mustAs(t, "host-old", 200, "GET", "/v1/volumes", "")
	h.mustAs(t, "host-old", 200, "PUT", fmt.Sprintf("/v1/leases/%d", l1.ID), `{}`)
	h.mustAs(t, "host-old", 200, "PUT", fmt.Sprintf("/v1/leases/%d", l2.ID), `{}`)
	h.mustAs(t, "host-old", 200, "PUT", "/v1/uses/a/v", fmt.Sprintf(`{"hostname":"h2","lease":%d,"mount-id":"m"}`, l2.ID))
	h.mustAs(t, "host-old", 200, "DELETE", "/v1/uses/a/v/mounts/m?host=h2", "")
	// It is still a host token: no volume changes, no admin routes.
	h.mustAs(t, "host-old", 403, "POST", "/v1/volumes", `{"policy":"a","name":"w"}`)
	h.mustAs(t, "host-old", 403, "PUT", "/v1/policies/a", localPolicy)
	var toks []config.Token
	_ = json.Unmarshal([]byte(h.mustAs(t, "admin", 200, "GET", "/v1/tokens", "")), &toks)
	for _, tk := range toks {
		if tk.ID == "0123456789abcdef" && tk.Host != "" {
			t.Errorf("the legacy token was changed: %+v", tk)
		}
	}
}

// A tenant listing across policies gets its own policies' objects only (200,
// not 403); read-only, host and admin see everything. Every List route is
// checked, so a new one that forgets the filter fails here.
func TestTenantListsAreFiltered(t *testing.T) {
	h := startAuth(t)
	reclaimable := `{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1ns"}}`
	for _, p := range []string{"a", "bpolicy"} {
		h.mustAs(t, "admin", 200, "PUT", "/v1/policies/"+p, reclaimable)
	}
	for _, ref := range []string{"a/v1", "a/v2", "bpolicy/w1", "bpolicy/w2", "bpolicy/w3"} {
		p, n, _ := strings.Cut(ref, "/")
		h.mustAs(t, "admin", 201, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":%q,"name":%q}`, p, n))
	}
	var lease config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &lease)
	for _, ref := range []string{"a/v1", "bpolicy/w1"} {
		h.mustAs(t, "host", 200, "PUT", "/v1/uses/"+ref, fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m"}`, lease.ID))
	}

	var refs []config.VolumeRef
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-a", 200, "GET", "/v1/volumes", "")), &refs)
	if want := []config.VolumeRef{{Policy: "a", Name: "v1"}, {Policy: "a", Name: "v2"}}; !reflect.DeepEqual(refs, want) {
		t.Errorf("tenant-a lists %v, want %v", refs, want)
	}
	for _, who := range []string{"admin", "read-only", "host"} {
		_ = json.Unmarshal([]byte(h.mustAs(t, who, 200, "GET", "/v1/volumes", "")), &refs)
		if len(refs) != 5 {
			t.Errorf("%s lists %v, want all 5 volumes", who, refs)
		}
	}
	var vols []config.Volume
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-a", 200, "GET", "/v1/volumes?detail=true", "")), &vols)
	if len(vols) != 2 || vols[0].Policy != "a" || vols[1].Policy != "a" {
		t.Errorf("tenant-a detail list: %+v", vols)
	}
	var pols []string
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-a", 200, "GET", "/v1/policies", "")), &pols)
	if !reflect.DeepEqual(pols, []string{"a"}) {
		t.Errorf("tenant-a policies = %v", pols)
	}
	var uses []config.Use
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-a", 200, "GET", "/v1/uses", "")), &uses)
	if len(uses) != 1 || uses[0].Volume != (config.VolumeRef{Policy: "a", Name: "v1"}) {
		t.Errorf("tenant-a uses = %+v", uses)
	}
	var recl []config.Reclaimable
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-a", 200, "GET", "/v1/reclaimable", "")), &recl)
	if len(recl) != 1 || recl[0].Volume != (config.VolumeRef{Policy: "a", Name: "v2"}) {
		t.Errorf("tenant-a reclaimable = %+v", recl)
	}
	// tenant-b has no volumes at all: an empty list, not another's.
	_ = json.Unmarshal([]byte(h.mustAs(t, "tenant-b", 200, "GET", "/v1/volumes", "")), &refs)
	if len(refs) != 0 {
		t.Errorf("tenant-b lists %v", refs)
	}

	// A removed volume in each policy, for the trash list.
	for _, ref := range []string{"a/gone", "bpolicy/gone"} {
		p, n, _ := strings.Cut(ref, "/")
		h.mustAs(t, "admin", 201, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":%q,"name":%q}`, p, n))
		h.mustAs(t, "admin", 200, "DELETE", "/v1/volumes/"+ref, "")
	}
	// Every List route: the other policy's name shows up for the admin
	// (so the check can fail) and never for the tenant, in any form.
	for _, rt := range Routes() {
		if rt.Access != List {
			continue
		}
		path, body := rt.Path+"?detail=true", ""
		switch rt.Path {
		case "/v1/runtimes":
			path = rt.Path + "?volume=a/v1&volume=bpolicy/w1"
		case "/v1/runtimes/watch":
			path, body = rt.Path, `{"volumes":["a/v1","bpolicy/w1"]}`
		}
		if out := h.mustAs(t, "admin", 200, rt.Method, path, body); !strings.Contains(out, "bpolicy") {
			t.Errorf("GET %s as admin lacks bpolicy: the test has no data for it: %s", rt.Path, out)
		}
		if out := h.mustAs(t, "tenant-a", 200, rt.Method, path, body); strings.Contains(out, "bpolicy") || strings.Contains(out, "w1") {
			t.Errorf("GET %s as tenant-a leaks another policy: %s", rt.Path, out)
		}
	}
	// Reads that are not per-policy lists stay closed to tenants, and a
	// tenant's own policy is readable while another's is not.
	for _, path := range []string{"/info", "/v1/global", "/v1/supervisor"} {
		h.mustAs(t, "tenant-a", 403, "GET", path, "")
	}
	h.mustAs(t, "tenant-a", 200, "GET", "/v1/policies/a", "")
	h.mustAs(t, "tenant-a", 403, "GET", "/v1/policies/bpolicy", "")
	h.mustAs(t, "tenant-a", 403, "GET", "/v1/volumes/bpolicy", "")
	h.mustAs(t, "tenant-a", 403, "PUT", "/v1/policies/a", localPolicy)
}

// A token made with a ttl works until it expires, then is refused as
// expired (401); one without works until revoked. A ttl out of range is a
// 400 and makes no token.
func TestTokenExpires(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	var mu sync.Mutex
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	srv, url := serve(t, Config{Client: cli, Keys: keys, Auth: true, Now: clock})
	ctx := context.Background()
	admin, err := srv.Store().CreateToken(ctx, config.TokenRequest{Role: config.RoleAdmin}, clock())
	if err != nil {
		t.Fatal(err)
	}
	call := func(tok, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, bad := range []string{`"30s"`, `"87600h1s"`, `"-1h"`, `"soon"`} {
		if code, body := call(admin.Secret, "POST", "/v1/tokens", `{"role":"read-only","ttl":`+bad+`}`); code != 400 {
			t.Errorf("ttl %s = %d %s, want 400", bad, code, body)
		}
	}
	code, body := call(admin.Secret, "POST", "/v1/tokens", `{"role":"read-only","ttl":"1h"}`)
	var nt config.NewToken
	if err := json.Unmarshal([]byte(body), &nt); code != 201 || err != nil || !nt.Expires.Equal(clock().Add(time.Hour)) {
		t.Fatalf("create with ttl 1h = %d %s (%v), want 201 expiring in an hour", code, body, err)
	}
	if ts, _ := srv.Store().ListTokens(ctx); len(ts) != 2 {
		t.Fatalf("tokens = %d, want the admin and the new one (refused ttls make none)", len(ts))
	}
	if code, _ := call(nt.Secret, "GET", "/v1/volumes", ""); code != 200 {
		t.Fatalf("fresh token = %d, want 200", code)
	}
	advance(time.Hour - time.Second)
	if code, _ := call(nt.Secret, "GET", "/v1/volumes", ""); code != 200 {
		t.Fatalf("token a second before expiry = %d, want 200", code)
	}
	advance(time.Second)
	if code, body := call(nt.Secret, "GET", "/v1/volumes", ""); code != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token = %d %s, want 401 expired", code, body)
	}
	advance(24 * 365 * time.Hour)
	if code, _ := call(admin.Secret, "GET", "/v1/volumes", ""); code != 200 {
		t.Fatalf("token without ttl a year on = %d, want 200", code)
	}
}

// force=true (drop a volume's records without its image) is for admins
// only: a tenant of the policy, or a host token scoped to it, is refused and
// nothing changes; force=false is an ordinary remove for them.
func TestForceRemoveIsAdminOnly(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"w"}`)
	before := h.dump(t)
	for _, who := range []string{"tenant-a", "host-pa", "read-only"} {
		for _, q := range []string{"?force=true", "?force=1", "?force=yes", "?force=false&force=true"} {
			if code, body := h.as(t, who, "DELETE", "/v1/volumes/a/v"+q, ""); code != 403 {
				t.Errorf("%s DELETE %s = %d %s, want 403", who, q, code, body)
			}
		}
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Error("refused forced removes changed etcd")
	}
	h.mustAs(t, "tenant-a", 200, "DELETE", "/v1/volumes/a/w?force=false", "") // to the trash
	h.mustAs(t, "admin", 204, "DELETE", "/v1/volumes/a/v?force=true", "")
}

// Errors to tenants carry no host paths (data directory, images, mount
// root); admins get the whole message.
func TestErrorsToTenantsHaveNoHostPaths(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	// The image goes behind volmaster's back: the next snapshot fails in
	// the backend with a message naming the image file.
	image := filepath.Join(h.dataDir, "images", "a", "v.img")
	if err := os.Remove(image); err != nil {
		t.Fatal(err)
	}
	code, body := h.as(t, "tenant-a", "POST", "/v1/volumes/a/v/snapshots", "{}")
	if code < 400 || strings.Contains(body, h.dataDir) || !strings.Contains(body, "[path]") {
		t.Errorf("tenant's failed snapshot = %d %s; want an error without %s", code, body, h.dataDir)
	}
	if code, body := h.as(t, "admin", "POST", "/v1/volumes/a/v/snapshots", "{}"); code < 400 || !strings.Contains(body, h.dataDir) {
		t.Errorf("admin's failed snapshot = %d %s; want the whole message", code, body)
	}
	if got := scrubPaths(`tenant token may not DELETE /v1/volumes/a/v: mount /dev/loop3 on /mnt/volplugin/a/v failed`); got !=
		`tenant token may not DELETE /v1/volumes/a/v: mount [path] on [path] failed` {
		t.Errorf("scrubPaths = %q", got)
	}
}
