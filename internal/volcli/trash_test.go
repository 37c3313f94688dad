package volcli

import (
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// A removed volume goes to the trash with its snapshots; a volume created
// under the same name meanwhile inherits nothing, blocks the restore with a
// clear message, and once it is removed too the first one comes back
// exactly as it was.
func TestTrashRestorePurge(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	orig := decode[config.Volume](t, h.ok("", "--json", "volume", "create", "p/v", "--opt", "snapshots=true", "--opt", "snapshot.frequency=1h", "--opt", "snapshot.keep=5"))
	h.ok("", "volume", "snapshot", "take", "p/v")

	rm := decode[map[string]any](t, h.ok("", "--json", "volume", "remove", "p/v"))
	trash, _ := rm["trash"].(map[string]any)
	id1, _ := trash["id"].(string)
	if err := config.ValidateTrashID(id1); err != nil {
		t.Fatalf("remove --json = %v: %v", rm, err)
	}
	h.fails(3, "volume p/v not found", "", "volume", "get", "p/v")
	out := h.ok("", "volume", "trash", "list")
	if !strings.HasPrefix(out, "p/v\t"+id1+"\t") || !strings.Contains(out, "1 snapshots") || strings.Count(out, "\n") != 1 {
		t.Fatalf("trash list = %q, want one line for p/v %s with 1 snapshot", out, id1)
	}

	// Same name again: no snapshot records from the removed one.
	h.ok("", "volume", "create", "p/v")
	if out := h.ok("", "volume", "snapshot", "list", "p/v"); out != "" {
		t.Errorf("re-created volume inherited snapshots: %q", out)
	}
	h.fails(4, "a volume named p/v exists", "", "volume", "trash", "restore", "p/v", id1)
	second := decode[map[string]any](t, h.ok("", "--json", "volume", "remove", "p/v"))
	id2, _ := second["trash"].(map[string]any)["id"].(string)
	if id2 == "" || id2 == id1 {
		t.Fatalf("second remove: trash ID %q (first %q)", id2, id1)
	}
	if n := len(decode[[]config.TrashEntry](t, h.ok("", "--json", "volume", "trash", "list", "p/v"))); n != 2 {
		t.Fatalf("trash list p/v: %d entries, want 2", n)
	}

	h.ok("", "volume", "trash", "restore", "p/v", id1)
	got := decode[config.Volume](t, h.ok("", "volume", "get", "p/v"))
	if !got.CreatedAt.Equal(orig.CreatedAt) || !got.Runtime.Snapshots || got.RestoredAt.IsZero() {
		t.Errorf("restored %+v, want the original (created %s, snapshots on) marked restored", got, orig.CreatedAt)
	}
	if out := h.ok("", "volume", "snapshot", "list", "p/v"); strings.Count(out, "\n") != 1 {
		t.Errorf("restored volume's snapshots = %q, want 1", out)
	}
	h.fails(3, "not found", "", "volume", "trash", "restore", "p/v", id1)
	h.fails(2, "trash ID", "", "volume", "trash", "purge", "p/v", "yesterday")
	h.ok("", "volume", "trash", "purge", "p/v", id2)
	if out := h.ok("", "volume", "trash", "list"); out != "" {
		t.Errorf("trash after restore and purge = %q", out)
	}
	h.fails(3, "no volume p/v in the trash", "", "volume", "trash", "restore", "p/v")

	// Restore without an ID takes the newest entry.
	h.ok("", "volume", "remove", "p/v")
	h.ok("", "volume", "trash", "restore", "p/v")
	h.ok("", "volume", "get", "p/v")
}

// A protected volume is refused by a plain remove (as docker volume rm
// sends it), with the command that removes it; protect and ephemeral
// together are refused.
func TestProtect(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok(`{"backend": "local", "create": {"size": "10MB"}, "protect": true, "trash": {"retention": "1h"}}`, "policy", "upload", "safe")
	h.fails(2, "protect cannot be combined with ephemeral", `{"backend": "local", "create": {"size": "10MB"}, "protect": true, "ephemeral": true}`,
		"policy", "upload", "bad")
	h.fails(2, "trash.retention", `{"backend": "local", "create": {"size": "10MB"}, "trash": {"retention": "1s"}}`, "policy", "upload", "bad")
	h.fails(2, "protect cannot be combined with ephemeral", "", "volume", "create", "p/e", "--opt", "protect=true", "--opt", "ephemeral=true")
	h.fails(2, "option protect", "", "volume", "create", "p/e", "--opt", "protect=maybe")

	h.ok("", "volume", "create", "p/pv", "--opt", "protect=true")
	h.ok("", "volume", "create", "safe/v")
	before := h.dump()
	for _, ref := range []string{"p/pv", "safe/v"} {
		h.fails(4, "to remove it, run `volcli volume remove --unprotect "+ref+"`", "", "volume", "remove", ref)
		h.fails(4, "is protected", "", "volume", "remove", "--force", ref)
	}
	h.sameDump(before, "refused removes of protected volumes")
	e := decode[map[string]any](t, h.ok("", "--json", "volume", "remove", "--unprotect", "safe/v"))
	if exp, _ := e["trash"].(map[string]any)["expires"].(string); exp == "" {
		t.Errorf("remove --unprotect --json = %v", e)
	}
	h.ok("", "volume", "remove", "--unprotect", "--force", "p/pv")
}
