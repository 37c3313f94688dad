package volcli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// age rewrites a stored volume's creation time, as for a volume created long
// ago.
func (h *harness) age(ref config.VolumeRef, d time.Duration) {
	h.t.Helper()
	resp, err := h.etcd.Get(h.ctx, h.keys.Volume(ref))
	if err != nil || len(resp.Kvs) != 1 {
		h.t.Fatalf("volume record of %s: %v", ref, err)
	}
	var rec map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		h.t.Fatal(err)
	}
	rec["created-at"] = time.Now().Add(-d).UTC()
	b, _ := json.Marshal(rec)
	if _, err := h.etcd.Put(h.ctx, h.keys.Volume(ref), string(b)); err != nil {
		h.t.Fatal(err)
	}
}

// putUsage stores a usage record as volmaster's lock manager would.
func (h *harness) putUsage(ref config.VolumeRef, u config.Usage) {
	h.t.Helper()
	b, _ := json.Marshal(u)
	if _, err := h.etcd.Put(h.ctx, h.keys.Usage(ref), string(b)); err != nil {
		h.t.Fatal(err)
	}
}

// A volume whose host died with it mounted is listed by reclaim as kept,
// with the host and the command; reclaim removes only the ready ones; a
// remove is refused until use force-remove records the unmount.
func TestReclaimKeepsUnprovenVolumes(t *testing.T) {
	h := newHarness(t)
	h.ok(`{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1h"}}`, "policy", "upload", "rp")
	for _, n := range []string{"dead", "old", "fresh"} {
		h.ok("", "volume", "create", "rp/"+n)
	}
	dead, old := config.VolumeRef{Policy: "rp", Name: "dead"}, config.VolumeRef{Policy: "rp", Name: "old"}
	h.age(dead, 3*time.Hour)
	h.age(old, 3*time.Hour)
	h.putUsage(dead, config.Usage{LastMounted: time.Now().Add(-2 * time.Hour).UTC(), Host: "node7"})
	h.ok("", "volume", "create", "rp/sync") // volmaster has read the changes above once this answers

	out := h.ok("", "volume", "reclaim", "--dry-run")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "rp/dead\t") || !strings.HasPrefix(lines[1], "rp/old\t") ||
		!strings.Contains(lines[0], `kept: in use until proven unmounted: last mounted on host "node7"`) ||
		!strings.Contains(lines[0], "volcli use force-remove rp/dead") || !strings.HasSuffix(lines[1], "\tready") {
		t.Fatalf("reclaim --dry-run printed %q", out)
	}
	rs := decode[[]config.Reclaimable](t, h.ok("", "--json", "volume", "reclaim", "--dry-run"))
	if len(rs) != 2 || rs[0].State != config.StateUnproven || rs[0].Host != "node7" || !rs[1].Ready {
		t.Errorf("reclaim --dry-run --json = %+v", rs)
	}
	out = h.ok("", "volume", "reclaim")
	if !strings.HasPrefix(out, "kept rp/dead: in use until proven unmounted") || !strings.HasSuffix(out, "\nremoved rp/old (to the trash)\n") {
		t.Errorf("reclaim printed %q", out)
	}
	h.fails(3, "volcli: volume rp/old not found", "", "volume", "get", "rp/old")

	line := h.fails(4, "", "", "volume", "remove", "rp/dead")
	if !strings.Contains(line, `"node7"`) || !strings.Contains(line, "volcli use force-remove rp/dead") {
		t.Errorf("remove of rp/dead: %q", line)
	}
	h.ok("", "use", "force-remove", "rp/dead")
	h.fails(3, "volcli: mount lock of volume rp/dead not found and no mount without a recorded unmount", "", "use", "force-remove", "rp/dead")
	h.ok("", "volume", "remove", "rp/dead")
}

// supervisor status shows the volumes volsupervisor keeps as in use until
// proven unmounted, with the host and the command.
func TestSupervisorStatusShowsUnproven(t *testing.T) {
	h := newHarness(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := config.SupervisorStatus{Name: "s1", Leading: true, LastRun: at,
		Unproven: []config.Unproven{{Volume: config.VolumeRef{Policy: "rp", Name: "dead"}, Host: "node7", LastMounted: at}}}
	b, _ := json.Marshal(st)
	if _, err := h.etcd.Put(h.ctx, h.keys.SupervisorStatus("s1"), string(b)); err != nil {
		t.Fatal(err)
	}
	out := h.ok("", "supervisor", "status")
	if want := "  kept rp/dead: in use until proven unmounted (last mounted on host node7 at 2026-03-01T12:00:00Z, " +
		"no recorded unmount): once node7 no longer has it mounted, run volcli use force-remove rp/dead\n"; !strings.HasSuffix(out, want) {
		t.Errorf("supervisor status printed %q, want it to end with %q", out, want)
	}
}
