package volcli

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/volmaster"
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

// Each volmaster keeps its own audit entries: volcli audit shows those of
// the one that answers, --all-volmasters merges every --volmaster URL's by
// time, naming each entry's volmaster, and says which did not answer.
func TestAuditAllVolmasters(t *testing.T) {
	h := newHarness(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv2, err := volmaster.New(volmaster.Config{Client: h.etcd, Keys: h.keys, Log: log, Now: strictClock()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Run(h.ctx); err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2.Handler())
	t.Cleanup(ts2.Close)
	h.ok(`{"backend":"nfs"}`, "policy", "upload", "p")
	if r := runVolcli("", "--volmaster", ts2.URL, "volume", "create", "p/v"); r.code != 0 {
		t.Fatalf("create through the second volmaster: %s", r.stderr)
	}
	both := h.url + "," + ts2.URL
	if r := runVolcli("", "--volmaster", both, "audit"); r.code != 0 || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, "PUT") {
		t.Errorf("audit through the first of two volmasters: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r := runVolcli("", "--volmaster", both, "audit", "--all-volmasters")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "\tPUT\t/v1/policies/p\t200\t") || !strings.Contains(lines[1], "\tPOST\t/v1/volumes\t201\t") {
		t.Fatalf("audit --all-volmasters: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	first, second := lines[0][strings.LastIndex(lines[0], "\t")+1:], lines[1][strings.LastIndex(lines[1], "\t")+1:]
	if first == "" || second == "" || first == second {
		t.Errorf("merged entries name volmasters %q and %q; want the two", first, second)
	}
	// One that does not answer: the others' entries, its URL on stderr, exit 1.
	dead := httptest.NewServer(nil)
	dead.Close()
	r = runVolcli("", "--volmaster", both+","+dead.URL, "audit", "--all-volmasters")
	if r.code != ExitError || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stderr, dead.URL) || !strings.Contains(r.stderr, "1 of 3 volmasters did not answer") {
		t.Errorf("audit --all-volmasters with a dead volmaster: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
