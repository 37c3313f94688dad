package volcli

import (
	"strings"
	"testing"
)

// volcli audit lists what volmaster audited, with its filters; bad filters
// are refused before volmaster is asked.
func TestAuditListAndFilters(t *testing.T) {
	h := newHarness(t)
	h.ok(`{"backend":"local","create":{"size":"10MB"}}`, "policy", "upload", "p")
	h.ok("", "volume", "create", "p/v")
	out := h.ok("", "audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "\tanonymous\t-\t127.0.0.1\tPUT\t/v1/policies/p\t200") ||
		!strings.Contains(lines[1], "\tPOST\t/v1/volumes\t201") {
		t.Fatalf("audit:\n%s", out)
	}
	if out := h.ok("", "audit", "--route", "/v1/volumes"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "POST") {
		t.Errorf("audit --route /v1/volumes:\n%s", out)
	}
	if out := h.ok("", "audit", "--who", "someone-else"); out != "" {
		t.Errorf("audit --who someone-else:\n%s", out)
	}
	if out := h.ok("", "audit", "--since", "1h"); strings.Count(out, "\n") != 2 {
		t.Errorf("audit --since 1h:\n%s", out)
	}
	if out := h.ok("", "audit", "--refused"); out != "" {
		t.Errorf("audit --refused with auth off:\n%s", out)
	}
	h.fails(ExitUsage, "--since", "", "audit", "--since", "yesterday")
}
