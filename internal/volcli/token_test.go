package volcli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// token create scopes a host token to --host and refuses a host token
// without one (or a host on another role) before calling volmaster; token
// list shows each token's scope.
func TestTokenCreateHostScope(t *testing.T) {
	h := newHarness(t)
	before := h.dump()
	h.fails(ExitUsage, "needs the host label", "", "token", "create", "--role", "host")
	h.fails(ExitUsage, "host name", "", "token", "create", "--role", "host", "--host", "a/b")
	h.fails(ExitUsage, "only host tokens are scoped to a host", "", "token", "create", "--role", "read-only", "--host", "h1")
	h.fails(ExitUsage, "only host tokens are scoped to a host", "", "token", "create", "--role", "tenant", "--policy", "p", "--host", "h1")
	h.sameDump(before, "refused token creates")

	secret := strings.TrimSpace(h.ok("", "token", "create", "--role", "host", "--host", "node-1"))
	id, _, _ := strings.Cut(secret, ".")
	h.ok("", "token", "create", "--role", "tenant", "--policy", "p1", "--policy", "p2")
	out := h.ok("", "token", "list")
	if !strings.Contains(out, id+"\thost\thost=node-1\t") || !strings.Contains(out, "\ttenant\tp1,p2\t") {
		t.Errorf("token list:\n%s", out)
	}
	toks := decode[[]config.Token](t, h.ok("", "--json", "token", "list"))
	var host []config.Token
	for _, tk := range toks {
		if tk.Role == config.RoleHost {
			host = append(host, tk)
		}
	}
	if len(host) != 1 || host[0].Host != "node-1" || host[0].ID != id {
		t.Errorf("token list --json host tokens: %+v", host)
	}
}

// The token comes from --token (with a warning: argv is public),
// VOLMASTER_TOKEN or --token-file; token create --ttl is checked before
// volmaster is asked, and token list shows each token's expiry.
func TestTokenSourcesAndTTL(t *testing.T) {
	h := newHarness(t)
	if r := h.run("", "--token", "0123456789abcdef.x", "policy", "list"); r.code != 0 || !strings.Contains(r.stderr, "readable by every local user") {
		t.Errorf("--token on argv: exit %d, stderr %q; want a warning", r.code, r.stderr)
	}
	t.Setenv("VOLMASTER_TOKEN", "0123456789abcdef.x")
	if r := h.run("", "policy", "list"); r.code != 0 || r.stderr != "" {
		t.Errorf("VOLMASTER_TOKEN: exit %d, stderr %q; want no warning", r.code, r.stderr)
	}
	t.Setenv("VOLMASTER_TOKEN", "")
	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte("0123456789abcdef.x\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := h.run("", "--token-file", file, "policy", "list"); r.code != 0 || r.stderr != "" {
		t.Errorf("--token-file: exit %d, stderr %q", r.code, r.stderr)
	}
	h.fails(ExitUsage, "both set", "", "--token-file", file, "--token", "a.b", "policy", "list")
	h.fails(ExitUsage, "token file", "", "--token-file", filepath.Join(t.TempDir(), "missing"), "policy", "list")
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	h.fails(ExitUsage, "is empty", "", "--token-file", empty, "policy", "list")

	before := h.dump()
	h.fails(ExitUsage, "not like 30s", "", "token", "create", "--role", "read-only", "--ttl", "30days")
	h.fails(ExitUsage, "not between", "", "token", "create", "--role", "read-only", "--ttl", "10s")
	h.fails(ExitUsage, "expires at once", "", "token", "create", "--role", "read-only", "--ttl", "0s")
	h.sameDump(before, "refused token creates")
	start := time.Now()
	h.ok("", "token", "create", "--role", "read-only", "--ttl", "2h", "--description", "short")
	for _, line := range strings.Split(h.ok("", "token", "list"), "\n") {
		if !strings.HasSuffix(line, "\tshort") {
			continue
		}
		f := strings.Split(line, "\t")
		exp, err := time.Parse(time.RFC3339, f[3])
		if err != nil || exp.Before(start.Add(2*time.Hour-time.Second)) || exp.After(time.Now().Add(2*time.Hour)) {
			t.Errorf("token list line %q: expiry %v, %v; want in two hours", line, exp, err)
		}
	}
}
