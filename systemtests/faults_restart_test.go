package systemtests

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
)

// kill -9 of volplugin after the mount; restart within the TTL: the mount
// is re-adopted with its lock, and host B cannot mount meanwhile.
func faultKill9AfterMount(t *testing.T) {
	e := newFaultEnv(t, "vpf-k9", 3)
	a, b := e.startHost("hostA", ""), e.startHost("hostB", "")
	const vol = "policy1/k9"
	e.createVolume(a, vol)
	_, w := e.mountWriting(a, vol, "c1")
	var c faultCounts
	_ = a.p.signal(syscall.SIGKILL)
	if _, errMsg := b.mount(t, vol, "b1"); errMsg == "" {
		c.DoubleMounts++
	}
	e.startHost("hostA", "")
	waitFor(t, 10*time.Second, "hostA holds the lock again", func() bool { return e.holder(vol) == "hostA" })
	if _, errMsg := b.mount(t, vol, "b2"); errMsg == "" {
		c.DoubleMounts++
	}
	if e.hostsMounting(vol) > 1 {
		c.DoubleMounts++
	}
	if _, err := os.Stat(e.image(vol)); err != nil {
		c.UsedRemoved++
	}
	_, failed := w.halt()
	c.FailedWrites = int(failed)
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: {"c1"}})
	recordRow(t, faultRow{Fault: "kill -9 volplugin", Step: "after the mount (restart < TTL)", Counts: c})
}

// Lease loss while a snapshot holds the operation lock: the relock is
// busy, is retried, and succeeds once the operation ends; host B never
// mounts.
func faultLeaseLossWhileBusy(t *testing.T) {
	e := newFaultEnv(t, "vpf-busy", 2)
	a, b := e.startHost("hostA", ""), e.startHost("hostB", "")
	const vol = "policy1/busy"
	e.createVolume(a, vol)
	_, w := e.mountWriting(a, vol, "c1")
	var c faultCounts
	cli := e.etcdClient()
	keys, _ := config.NewKeys("")
	st := store.New(cli, keys, 10*time.Second)
	ctx := context.Background()
	l, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := config.ParseVolumeRef(vol)
	h := store.Holder{Lease: l.ID, Owner: "fault-suite snapshot"}
	// The fault: the lease lapses (volplugin stopped past the TTL) while
	// an operation holds the volume.
	_ = a.p.cmd.Process.Signal(syscall.SIGSTOP)
	waitFor(t, 15*time.Second, "hostA's lock to expire", func() bool { return e.holder(vol) == "" })
	if _, err := st.BeginOp(ctx, ref, "snapshot", h, false); err != nil {
		t.Fatal(err)
	}
	_ = a.p.cmd.Process.Signal(syscall.SIGCONT)
	// Relocks are refused while the operation runs; B is refused too.
	if _, errMsg := b.mount(t, vol, "b1"); errMsg == "" {
		c.DoubleMounts++
	}
	if _, err := st.ReleaseOp(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "hostA's relock after the operation", func() bool { return e.holder(vol) == "hostA" })
	if _, errMsg := b.mount(t, vol, "b2"); errMsg == "" {
		c.DoubleMounts++
	}
	_, failed := w.halt()
	c.FailedWrites = int(failed)
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: {"c1"}})
	recordRow(t, faultRow{Fault: "lease loss while a snapshot holds the op lock", Step: "relock", Counts: c})
}

// The mount root changes across a restart: the mount is found by its
// device under the old root, its lock kept, and unmounted there at the end;
// with the state file lost too, recovery goes by the lock and the device.
func faultMountRootChanged(t *testing.T) { mountRootChanged(t, false) }

func faultMountRootChangedNoState(t *testing.T) { mountRootChanged(t, true) }

func mountRootChanged(t *testing.T, loseState bool) {
	e := newFaultEnv(t, "vpf-root", 3)
	old := filepath.Join(e.data, "oldroot-hostA")
	a := e.startHost("hostA", old)
	b := e.startHost("hostB", "")
	const vol = "policy1/root"
	e.createVolume(a, vol)
	_, w := e.mountWriting(a, vol, "c1")
	var c faultCounts
	_ = a.p.stop()
	step := "volplugin restart"
	if loseState {
		if err := os.RemoveAll(filepath.Join(e.data, "state-hostA")); err != nil {
			t.Fatal(err)
		}
		step = "restart, state file lost"
	}
	a = e.startHost("hostA", filepath.Join(e.data, "newroot-hostA"))
	waitFor(t, 10*time.Second, "hostA's lock on its new lease", func() bool { return e.holder(vol) == "hostA" })
	if e.holder(vol) != "hostA" {
		c.LocksLost++
	}
	if _, errMsg := b.mount(t, vol, "b1"); errMsg == "" {
		c.DoubleMounts++
	}
	_, failed := w.halt()
	c.FailedWrites = int(failed)
	c.LocksLost += e.lostLocks()
	e.finish(&c, map[string][]string{vol: {"c1"}})
	recordRow(t, faultRow{Fault: "mount root changed", Step: step, Counts: c})
}
