package volcli

import (
	"strings"
	"testing"

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
