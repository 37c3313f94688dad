package volcli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const originalDump = "../migrate/testdata/original-etcd/contiv-etcd-v2.json"

func TestMigrateFromContivFile(t *testing.T) {
	h := newHarness(t)
	empty := h.dump()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{},
		{"--etcd", "http://127.0.0.1:1", "--file", originalDump},
		{"--file", filepath.Join(dir, "missing.json")},
		{"--file", garbage},
		{"--file", originalDump, "--prefix", "volplugin"},
	} {
		if r := h.run("", append([]string{"migrate", "from-contiv"}, args...)...); r.code != ExitUsage {
			t.Errorf("migrate from-contiv %v: exit %d, want %d: %s", args, r.code, ExitUsage, r.stderr)
		}
	}
	h.sameDump(empty, "refused imports")

	// A mount lock in the tree: refused, naming it.
	b, err := os.ReadFile(originalDump)
	if err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked.json")
	withLock := strings.Replace(string(b), `"key": "/volplugin/users/mount/p",
        "dir": true,
        "nodes": []`, `"key": "/volplugin/users/mount/p",
        "dir": true,
        "nodes": [{"key": "/volplugin/users/mount/p/web", "value": "{\"Hostname\":\"node7\"}", "ttl": 30}]`, 1)
	if withLock == string(b) {
		t.Fatal("the dump has no users/mount/p directory to put a lock in")
	}
	if err := os.WriteFile(locked, []byte(withLock), 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.run("", "migrate", "from-contiv", "--file", locked)
	if r.code != ExitConflict || !strings.Contains(r.stderr, "users/mount/p/web (host node7)") {
		t.Errorf("import with a lock: exit %d: %s", r.code, r.stderr)
	}
	h.sameDump(empty, "an import refused for a lock")

	out := h.ok("", "migrate", "from-contiv", "--file", originalDump, "--dry-run")
	if !strings.Contains(out, "dry run: nothing was written") || strings.Count(out, "would create") != 10 {
		t.Errorf("dry run:\n%s", out)
	}
	h.sameDump(empty, "a dry run")

	var rep struct {
		Items []struct{ Kind, Name, Action string }
		Notes []struct{ Record, Field, Why string } `json:"not-carried-over"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "--json", "migrate", "from-contiv", "--file", originalDump)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 10 || rep.Items[0].Action != "created" || len(rep.Notes) == 0 {
		t.Errorf("import report %+v", rep)
	}
	if got := h.ok("", "volume", "list-all"); got != "p/pgdata\np/redis\np/sized\np/web\n" {
		t.Errorf("volume list-all: %q", got)
	}
	imported := h.dump()
	out = h.ok("", "migrate", "from-contiv", "--file", originalDump)
	if strings.Count(out, " unchanged ") != 10 {
		t.Errorf("second import:\n%s", out)
	}
	h.sameDump(imported, "a second import")
}
