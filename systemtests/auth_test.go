package systemtests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// volmaster --auth as users run it: the bootstrap admin token, volcli token
// create, a tenant refused outside its policy and seeing only its volumes in
// list-all, volplugin through a whole mount with a token scoped to its host,
// and refused (no lease) with another host's token.
func TestAuthWithBinaries(t *testing.T) {
	data := t.TempDir()
	vm := startVolmaster(t, data, "--auth")
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatalf("bootstrap token: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(data, "admin.token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap token file mode %v", fi.Mode().Perm())
	}
	admin := strings.TrimSpace(string(b))
	if _, e, code := volcli(t, vm.URL, "", "policy", "list"); code != 1 || !strings.Contains(e, "bearer token is required") {
		t.Errorf("without a token: exit %d %s", code, e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"10MB"}}`, "--token", admin, "policy", "upload", "a"); code != 0 {
		t.Fatalf("admin upload: %s", e)
	}
	out, e, code := volcli(t, vm.URL, "", "--token", admin, "token", "create", "--role", "tenant", "--policy", "a")
	if code != 0 {
		t.Fatalf("token create: %s", e)
	}
	tenant := strings.TrimSpace(out)
	if _, e, code := volcli(t, vm.URL, "", "--token", tenant, "volume", "create", "a/v"); code != 0 {
		t.Errorf("tenant create in its policy: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"10MB"}}`, "--token", tenant, "policy", "upload", "a"); code != 1 || !strings.Contains(e, "tenant token may not") {
		t.Errorf("tenant policy upload: exit %d %s", code, e)
	}
	out, _, _ = volcli(t, vm.URL, "", "--token", admin, "--json", "token", "list")
	var toks []struct{ Role, Hash string }
	if err := json.Unmarshal([]byte(out), &toks); err != nil || len(toks) != 2 || strings.Contains(out, "secret") || strings.Contains(out, `"hash"`) {
		t.Errorf("token list: %s %v", out, err)
	}
	// A tenant lists across policies and sees only its own volumes.
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"10MB"}}`, "--token", admin, "policy", "upload", "b"); code != 0 {
		t.Fatalf("admin upload b: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "--token", admin, "volume", "create", "b/secret"); code != 0 {
		t.Fatalf("admin create b/secret: %s", e)
	}
	if out, e, code := volcli(t, vm.URL, "", "--token", tenant, "volume", "list-all"); code != 0 || out != "a/v\n" {
		t.Errorf("tenant volume list-all: exit %d %q %s", code, out, e)
	}
	if out, _, code := volcli(t, vm.URL, "", "--token", admin, "volume", "list-all"); code != 0 || out != "a/v\nb/secret\n" {
		t.Errorf("admin volume list-all: exit %d %q", code, out)
	}
	if out, e, code := volcli(t, vm.URL, "", "--token", tenant, "policy", "list"); code != 0 || out != "a\n" {
		t.Errorf("tenant policy list: exit %d %q %s", code, out, e)
	}

	// Host tokens name their host.
	if _, e, code := volcli(t, vm.URL, "", "--token", admin, "token", "create", "--role", "host"); code != 2 || !strings.Contains(e, "host label") {
		t.Errorf("host token without --host: exit %d %s", code, e)
	}
	hostTok, e, code := volcli(t, vm.URL, "", "--token", admin, "token", "create", "--role", "host", "--host", "hostA", "--policy", "a")
	if code != 0 {
		t.Fatalf("host token: %s", e)
	}
	tokFile := filepath.Join(data, "host.token")
	if err := os.WriteFile(tokFile, []byte(hostTok), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the volplugin half needs root for loop devices and mounts")
	}
	vp := startVolplugin(t, vm, data, "vpsys-auth", "hostA", "--socket-dir", filepath.Join(data, "plugins"), "--token-file", tokFile)
	waitLease(t, vp)
	// The whole volplugin flow with a token scoped to its host and policy a:
	// docker volume create in a (not in b), volplugin sees the volume,
	// mounts it (lock under the host's lease), unmounts it (release),
	// docker volume rm.
	pc := newPluginClient(vp.lines["volplugin socket"])
	if e, _ := pc.call(t, "Create", `{"Name":"a/pv","Opts":{"size":"16MB"}}`)["Err"].(string); e != "" {
		t.Fatalf("plugin create in the token's policy: %s\n%s", e, vp.logs())
	}
	if e, _ := pc.call(t, "Get", `{"Name":"a/pv"}`)["Err"].(string); e != "" {
		t.Fatalf("plugin get: %s\n%s", e, vp.logs())
	}
	if e, _ := pc.call(t, "Create", `{"Name":"b/other"}`)["Err"].(string); !strings.Contains(e, "policy b is not one of the token's") {
		t.Errorf("plugin create outside the token's policies: %q", e)
	}
	mounted := pc.call(t, "Mount", `{"Name":"a/pv","ID":"m1"}`)
	if p, _ := mounted["Mountpoint"].(string); p == "" {
		t.Fatalf("plugin mount with a host token: %v\n%s", mounted, vp.logs())
	}
	if out, e, code := volcli(t, vm.URL, "", "--token", admin, "use", "get", "a/pv"); code != 0 || !strings.Contains(out, "hostA") {
		t.Errorf("lock after mount: exit %d %s %s", code, out, e)
	}
	if e, _ := pc.call(t, "Unmount", `{"Name":"a/pv","ID":"m1"}`)["Err"].(string); e != "" {
		t.Errorf("plugin unmount: %s\n%s", e, vp.logs())
	}
	if _, _, code := volcli(t, vm.URL, "", "--token", admin, "use", "get", "a/pv"); code != 3 {
		t.Errorf("lock after unmount: exit %d, want 3 (none)", code)
	}
	if e, _ := pc.call(t, "Remove", `{"Name":"a/pv"}`)["Err"].(string); e != "" {
		t.Errorf("plugin remove after unmount: %s", e)
	}
	if _, _, code := volcli(t, vm.URL, "", "--token", admin, "volume", "get", "a/pv"); code != 3 {
		t.Errorf("a/pv after the plugin's remove: exit %d, want 3", code)
	}

	// hostA's token on a volplugin labelled hostB gets no lease, and the log
	// says why, naming both hosts.
	vpB := startVolplugin(t, vm, data, "vpsys-auth-b", "hostB", "--socket-dir", filepath.Join(data, "plugins-b"),
		"--mount-root", filepath.Join(data, "mnt-b"), "--token-file", tokFile)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(vpB.logs(), `names host \"hostB\", not the token's host \"hostA\"`) {
		if time.Now().After(deadline) {
			t.Fatalf("volplugin hostB with hostA's token:\n%s", vpB.logs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if l, _ := pluginInfo(t, vpB.lines["volplugin socket"])["lease"].(map[string]any); l != nil && l["id"].(float64) != 0 {
		t.Errorf("volplugin hostB got lease %v with hostA's token", l)
	}
}

// waitLease waits until volplugin reports a host lease.
func waitLease(t *testing.T, vp *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info := pluginInfo(t, vp.lines["volplugin socket"])
		if l, _ := info["lease"].(map[string]any); l != nil && l["id"].(float64) != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("volplugin with a host token got no lease\n%s", vp.logs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}
