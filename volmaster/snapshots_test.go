package volmaster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/volplugin/volplugin/config"
)

func TestSnapshotTakeListCopy(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	img := filepath.Join(h.dataDir, "images", "p", "v.img")
	if err := os.WriteFile(img, []byte("snapshot me"), 0o644); err != nil {
		t.Fatal(err)
	}
	var snap config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{}`)), &snap)
	if _, err := config.ParseSnapshotName(snap.Name); err != nil || snap.By == "" {
		t.Fatalf("snapshot = %+v (%v)", snap, err)
	}
	if err := os.WriteFile(img, []byte("later"), 0o644); err != nil {
		t.Fatal(err)
	}
	var snaps []config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v/snapshots", "")), &snaps)
	if len(snaps) != 1 || snaps[0].Name != snap.Name {
		t.Fatalf("snapshots = %+v", snaps)
	}
	h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots/"+snap.Name+"/copy", `{"name":"c"}`)
	got, _ := os.ReadFile(filepath.Join(h.dataDir, "images", "p", "c.img"))
	if !strings.HasPrefix(string(got), "snapshot me") {
		t.Errorf("copy holds %q, want the snapshot's data", got[:min(len(got), 20)])
	}
	h.must(t, 409, "POST", "/v1/volumes/p/v/snapshots/"+snap.Name+"/copy", `{"name":"c"}`)
	h.must(t, 404, "POST", "/v1/volumes/p/v/snapshots/20200101T000000.000Z/copy", `{"name":"d"}`)
	h.must(t, 400, "POST", "/v1/volumes/p/v/snapshots/notatime/copy", `{"name":"d"}`)
	h.must(t, 400, "POST", "/v1/volumes/p/v/snapshots/"+snap.Name+"/copy", `{"name":"a/b"}`)
	h.must(t, 404, "POST", "/v1/volumes/p/nope/snapshots", `{}`)
	h.must(t, 404, "GET", "/v1/volumes/p/nope/snapshots", "")
	// Removing the volume removes its snapshots and their records.
	h.must(t, 200, "DELETE", "/v1/volumes/p/v", "")
	if d := h.dump(t); strings.Contains(strings.Join(keysOf(d), " "), "/snapshots/p/v/") {
		t.Errorf("snapshot records left: %v", keysOf(d))
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "snapshots", "p", "v")); !os.IsNotExist(err) {
		t.Errorf("snapshot files left: %v", err)
	}
}

// On-demand snapshots are pruned by the volume's keep even with scheduled
// snapshots off.
func TestOnDemandSnapshotsPruned(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":false,"snapshot":{"keep":2}}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	var names []string
	for range 4 {
		var snap config.Snapshot
		_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{}`)), &snap)
		names = append(names, snap.Name)
	}
	var snaps []config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v/snapshots", "")), &snaps)
	if len(snaps) != 2 || snaps[0].Name != names[2] || snaps[1].Name != names[3] {
		t.Errorf("kept %+v, want the newest two of %v", snaps, names)
	}
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Remove and snapshot of the same volume, racing 100 times: each either
// succeeds or fails with a clear conflict, and nothing is left orphaned.
func TestRemoveRacingSnapshot(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	codes := map[string]int{}
	for i := range 100 {
		h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"r"}`)
		var wg sync.WaitGroup
		var snapCode, rmCode int
		var snapBody, rmBody string
		wg.Add(2)
		go func() { defer wg.Done(); snapCode, snapBody = h.do(t, "POST", "/v1/volumes/p/r/snapshots", `{}`) }()
		go func() { defer wg.Done(); rmCode, rmBody = h.do(t, "DELETE", "/v1/volumes/p/r", "") }()
		wg.Wait()
		codes["snapshot "+itoa(snapCode)]++
		codes["remove "+itoa(rmCode)]++
		if snapCode != 201 && snapCode != 409 && snapCode != 404 {
			t.Fatalf("round %d: snapshot %d %s", i, snapCode, snapBody)
		}
		if rmCode != 200 && rmCode != 409 {
			t.Fatalf("round %d: remove %d %s", i, rmCode, rmBody)
		}
		if rmCode == 409 {
			h.must(t, 200, "DELETE", "/v1/volumes/p/r", "")
		}
		d := h.dump(t)
		for k := range d {
			if strings.Contains(k, "/p/r") && !strings.HasPrefix(k, "/volplugin/trash/p/r/") {
				t.Fatalf("round %d: %s left after remove", i, k)
			}
		}
		if _, err := os.Stat(filepath.Join(h.dataDir, "snapshots", "p", "r")); !os.IsNotExist(err) {
			t.Fatalf("round %d: snapshot files left after remove", i)
		}
	}
	t.Logf("outcomes: %v", codes)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestReclaimableAndSupervisorRoutes(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1ns"}}`)
	h.must(t, 200, "PUT", "/v1/policies/q", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"old"}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"q","name":"kept"}`)
	var rs []config.Reclaimable
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/reclaimable", "")), &rs)
	if len(rs) != 1 || rs[0].Volume.String() != "p/old" || rs[0].WillRemove {
		t.Errorf("reclaimable = %+v", rs)
	}
	if body := h.must(t, 200, "GET", "/v1/supervisor", ""); strings.TrimSpace(body) != "[]" {
		t.Errorf("supervisors with none running = %s", body)
	}
}
