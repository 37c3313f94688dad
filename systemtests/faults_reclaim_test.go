package systemtests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSupervisor runs a volsupervisor on the row's etcd and local backend.
func (e *faultEnv) startSupervisor(name string) *proc {
	e.t.Helper()
	p := startProc(e.t, "volsupervisor", []string{"--etcd", e.vm.EtcdURL, "--name", name, "--listen", "",
		"--local-data-dir", filepath.Join(e.data, "local"), "--mount-root", filepath.Join(e.data, "mnt")}, "volsupervisor")
	e.logs = append(e.logs, p)
	return p
}

// Reclaim with the lock gone after kill -9: a reclaimable volume (reclaim
// enabled, unused for 1 s) is written on host A when A's volplugin is killed
// with -9. Its lock expires with A's lease, but no unmount is recorded: past
// the TTL, the reclaim period and the removal grace volsupervisor keeps it
// (listed as kept: in use until proven unmounted) and the writer goes on.
// Then the normal path: A is started again, re-adopts the mount, the
// container stops, and after the grace the volume is reclaimed.
func faultReclaimAfterKill9(t *testing.T) {
	const ttl = 2
	e := newFaultEnv(t, "vpf-recl", ttl)
	policy := `{"backend":"local","create":{"size":"32MB","filesystem":"ext4"},"reclaim":{"enabled":true,"unused-for":"1s"}}`
	if _, errOut, code := volcli(t, e.vm.URL, policy, "policy", "upload", "reclaim1"); code != 0 {
		t.Fatalf("policy upload: %s", errOut)
	}
	a := e.startHost("hostA", "")
	const vol = "reclaim1/r"
	e.createVolume(a, vol)
	mp, w := e.mountWriting(a, vol, "c1")
	e.startSupervisor("s1")
	var c faultCounts

	_ = a.p.signal(syscall.SIGKILL)
	waitFor(t, 15*time.Second, "hostA's lock to expire with its lease", func() bool { return e.holder(vol) == "" })
	// The fault lasts past the lock's expiry, the reclaim period (1 s) and
	// the grace (2×TTL), with 2 s to spare; the volume must be there all
	// along.
	past := time.Now().Add(time.Second + 2*ttl*time.Second + 2*time.Second)
	waitForQuiet(t, time.Until(past)+time.Second, func() bool {
		if _, err := os.Stat(e.image(vol)); err != nil || !e.recordExists(vol) {
			return true // removed: stop waiting, it is counted below
		}
		return time.Now().After(past)
	})
	if _, err := os.Stat(e.image(vol)); err != nil || !e.recordExists(vol) {
		c.UsedRemoved++
	}
	out, _, _ := volcli(t, e.vm.URL, "", "supervisor", "status")
	if !strings.Contains(out, "kept "+vol+": in use until proven unmounted") {
		t.Errorf("volcli supervisor status does not list %s as kept:\n%s", vol, out)
	}

	// The normal path: A is back, the container stops, the volume goes.
	a = e.startHost("hostA", "")
	waitFor(t, 15*time.Second, "hostA to hold the lock again", func() bool { return e.holder(vol) == "hostA" })
	writes, failed := w.halt()
	if writes == 0 {
		t.Error("the writer wrote nothing")
	}
	c.FailedWrites = int(failed)
	if b, err := os.ReadFile(filepath.Join(mp, "marker")); err != nil || string(b) != vol {
		c.Reformats++ // the data is not intact
	}
	if errMsg := a.unmount(t, vol, "c1"); errMsg != "" {
		t.Fatalf("unmount: %s", errMsg)
	}
	unmounted := time.Now()
	waitForQuiet(t, 30*time.Second, func() bool { return !e.recordExists(vol) })
	if e.recordExists(vol) {
		t.Errorf("%s not reclaimed %s after its unmount", vol, time.Since(unmounted).Round(time.Second))
	} else if took := time.Since(unmounted); took < 2*ttl*time.Second {
		t.Errorf("%s reclaimed %s after its unmount, before the grace (%ds)", vol, took.Round(10*time.Millisecond), 2*ttl)
	}
	if _, err := os.Stat(e.image(vol)); err == nil {
		c.LeakedImages++
	}
	if out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE").Output(); strings.Contains(string(out), e.image(vol)) {
		c.LeakedLoops++
	}
	if len(e.mountsOfImage(vol)) > 0 {
		c.LeakedMounts++
	}
	c.LocksLost = e.lostLocks()
	recordRow(t, faultRow{Fault: "reclaim with the lock gone after kill -9", Step: "volsupervisor, past TTL + grace", Counts: c})
}
