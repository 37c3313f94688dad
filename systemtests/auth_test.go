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
// create, a tenant refused outside its policy, volplugin with a host token.
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
	hostTok, e, code := volcli(t, vm.URL, "", "--token", admin, "token", "create", "--role", "host")
	if code != 0 {
		t.Fatalf("host token: %s", e)
	}
	tokFile := filepath.Join(data, "host.token")
	if err := os.WriteFile(tokFile, []byte(hostTok), 0o600); err != nil {
		t.Fatal(err)
	}
	vp := startVolplugin(t, vm, data, "vpsys-auth", "hostA", "--socket-dir", filepath.Join(data, "plugins"), "--token-file", tokFile)
	deadline := time.Now().Add(15 * time.Second)
	for {
		info := pluginInfo(t, vp.lines["volplugin socket"])
		if l, _ := info["lease"].(map[string]any); l != nil && l["id"].(float64) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volplugin with a host token got no lease\n%s", vp.logs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}
