package systemtests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// snapshotsBy counts a volume's snapshot records by who took them.
func snapshotsBy(t *testing.T, url, vol string) map[string]int {
	t.Helper()
	out, errOut, code := volcli(t, url, "", "--json", "volume", "snapshot", "list", vol)
	if code != 0 {
		t.Fatalf("snapshot list: %s", errOut)
	}
	var snaps []struct{ By string }
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("snapshot list %q: %v", out, err)
	}
	by := map[string]int{}
	for _, s := range snaps {
		by[s.By]++
	}
	return by
}

func waitSnapshots(t *testing.T, url, vol, by string, atLeast int, d time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := snapshotsBy(t, url, vol)
		if got[by] >= atLeast {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: snapshots by %v, want %d by %s", d, got, atLeast, by)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// Two volsupervisor processes: one acts; SIGSTOP it and the other takes
// over; after SIGCONT the old leader takes no further snapshot; kill -9 the
// new leader and the old one leads again.
func TestSupervisorLeadershipWithStopAndKill(t *testing.T) {
	data := t.TempDir()
	vm := startVolmaster(t, data)
	if _, e, code := volcli(t, vm.URL, `{"TTL": 2, "Timeout": 1}`, "global", "upload"); code != 0 {
		t.Fatalf("global upload: %s", e)
	}
	policy := `{"backend":"local","create":{"size":"8MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1s","keep":1000}}}`
	if _, e, code := volcli(t, vm.URL, policy, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "create", "p/v"); code != 0 {
		t.Fatalf("volume create: %s", e)
	}
	sup := func(name string) *proc {
		return startProc(t, "volsupervisor", []string{"--etcd", vm.EtcdURL, "--name", name, "--listen", "",
			"--local-data-dir", filepath.Join(data, "local"), "--mount-root", filepath.Join(data, "mnt")}, "volsupervisor")
	}
	s1 := sup("s1")
	waitSnapshots(t, vm.URL, "p/v", "volsupervisor s1", 2, 20*time.Second)
	s2 := sup("s2")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, _ := volcli(t, vm.URL, "", "supervisor", "status")
		if strings.Contains(out, "s1\tLEADER") && strings.Contains(out, "s2\tstandby") && strings.Contains(out, "next snapshot of p/v") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volcli supervisor status:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	// s2 campaigns but s1 keeps leading: only s1 acts.
	before := snapshotsBy(t, vm.URL, "p/v")
	waitSnapshots(t, vm.URL, "p/v", "volsupervisor s1", before["volsupervisor s1"]+3, 10*time.Second)
	if n := snapshotsBy(t, vm.URL, "p/v")["volsupervisor s2"]; n != 0 {
		t.Fatalf("s2 took %d snapshots while s1 leads", n)
	}

	if err := s1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitSnapshots(t, vm.URL, "p/v", "volsupervisor s2", 1, 15*time.Second)
	t.Logf("s2 took over %s after s1 was stopped (TTL 2s)", time.Since(stopped).Round(10*time.Millisecond))
	frozen := snapshotsBy(t, vm.URL, "p/v")["volsupervisor s1"]
	if err := s1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// s2 keeps snapshotting for a while; the woken s1 must not.
	n2 := snapshotsBy(t, vm.URL, "p/v")["volsupervisor s2"]
	waitSnapshots(t, vm.URL, "p/v", "volsupervisor s2", n2+6, 15*time.Second)
	if got := snapshotsBy(t, vm.URL, "p/v")["volsupervisor s1"]; got != frozen {
		t.Fatalf("s1 took %d snapshots after waking up as a deposed leader", got-frozen)
	}

	_ = s2.signal(syscall.SIGKILL)
	killed := time.Now()
	waitSnapshots(t, vm.URL, "p/v", "volsupervisor s1", frozen+1, 15*time.Second)
	t.Logf("s1 took over %s after s2 was killed (TTL 2s)", time.Since(killed).Round(10*time.Millisecond))
}
