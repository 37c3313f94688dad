package systemtests

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// The fault suite: each row injects one fault at one step into real
// processes (volmaster with its embedded etcd, volplugin per "host", loop
// devices and mounts) and counts what the safety invariants forbid. Every
// counter must be 0; the table is printed (and written to $FAULT_TABLE, which
// `make test` prints after the run).

// faultCounts are the outcomes a row counts.
type faultCounts struct {
	DoubleMounts, LocksLost, LeakedLocks, LeakedLoops, LeakedMounts, LeakedImages int
	Reformats, UsedRemoved, FailedWrites                                          int
}

func (c faultCounts) zero() bool { return c == faultCounts{} }

type faultRow struct {
	Fault, Step string
	Counts      faultCounts
	Note        string
}

var faultRows struct {
	sync.Mutex
	rows []faultRow
}

func recordRow(t *testing.T, r faultRow) {
	t.Helper()
	faultRows.Lock()
	faultRows.rows = append(faultRows.rows, r)
	faultRows.Unlock()
	if !r.Counts.zero() {
		t.Errorf("fault %q at %q: counters not zero: %+v", r.Fault, r.Step, r.Counts)
	}
}

func faultTable() string {
	faultRows.Lock()
	defer faultRows.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%-52s %-34s %6s %5s %6s %5s %6s %6s %8s %7s %6s\n", "FAULT", "STEP",
		"DOUBLE", "LOST", "LOCKS", "LOOPS", "MOUNTS", "IMAGES", "REFORMAT", "REMOVED", "WRITES")
	for _, r := range faultRows.rows {
		c := r.Counts
		fmt.Fprintf(&b, "%-52s %-34s %6d %5d %6d %5d %6d %6d %8d %7d %6d\n", r.Fault, r.Step,
			c.DoubleMounts, c.LocksLost, c.LeakedLocks, c.LeakedLoops, c.LeakedMounts, c.LeakedImages,
			c.Reformats, c.UsedRemoved, c.FailedWrites)
	}
	return b.String()
}

// appendFaultTable adds a table to $FAULT_TABLE, which `make test` prints
// after the run (the fault suite's and the HA suite's, in the order they ran).
func appendFaultTable(table string) {
	p := os.Getenv("FAULT_TABLE")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(table)
}

func TestFaultSuite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fault suite needs root for loop devices and mounts")
	}
	t.Cleanup(func() {
		table := faultTable()
		t.Log("\n" + table)
		appendFaultTable(table)
	})
	t.Run("kill9MidMount", faultKill9MidMount)
	t.Run("kill9AfterMount", faultKill9AfterMount)
	t.Run("kill9Volmaster", faultKill9Volmaster)
	t.Run("reclaimAfterKill9", faultReclaimAfterKill9)
	t.Run("restartLongerThanTTL", faultRestartLongerThanTTL)
	t.Run("leaseLossWhileBusy", faultLeaseLossWhileBusy)
	t.Run("mountRootChanged", faultMountRootChanged)
	t.Run("mountRootChangedNoState", faultMountRootChangedNoState)
	t.Run("releaseWhileVolmasterDown", faultReleaseWhileVolmasterDown)
	t.Run("startWhileVolmasterDown", faultStartWhileVolmasterDown)
	t.Run("volmasterDown60s", faultVolmasterDown60s)
	t.Run("halfOpenRenewal", faultHalfOpenRenewal)
	t.Run("superblockZeroed", faultSuperblockZeroed)
	t.Run("superblockZeroedUnmarked", faultSuperblockZeroedUnmarked)
	t.Run("cephFencing", faultCephFencing)
	t.Run("removeThenRestore", faultRemoveThenRestore)
	t.Run("removeProtected", faultRemoveProtected)
}
