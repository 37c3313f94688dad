package systemtests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/faultpoint"
)

// kill -9 rows. A fault injector (internal/faultpoint, linked into the test
// binaries by the "faults" build tag) stops a daemon at a named step of an
// operation on one volume; the row waits for the daemon to say it got there,
// kills it with -9 and starts it again. One process can be stopped at
// several steps at once, each on its own volume, so one kill serves several
// rows; each row counts on its own volume.

// faultEnvVar is the environment that stops a daemon at the faultpoint
// entries (comma-separated STEP@policy/volume; "" for none).
func faultEnvVar(entries string) []string {
	if entries == "" {
		return nil
	}
	return []string{faultpoint.Env + "=" + entries}
}

// waitReached waits until p has reached every faultpoint entry.
func waitReached(t *testing.T, p *proc, entries ...string) {
	t.Helper()
	for _, e := range entries {
		waitFor(t, 30*time.Second, "faultpoint "+e, func() bool { return strings.Contains(p.logs(), faultpoint.Reached(e)) })
	}
}

// stepRow is one step a kill lands at, on its own volume.
type stepRow struct {
	step, label string
	vol         string
}

func (r stepRow) entry() string { return r.step + "@" + r.vol }

func entries(rows []stepRow) string {
	var es []string
	for _, r := range rows {
		es = append(es, r.entry())
	}
	return strings.Join(es, ",")
}

// kill -9 of volplugin in the middle of Mounts, one volume per step: before
// the lock is asked for; with the lock granted in etcd but the answer never
// received (volmaster is stopped before it answers); with the lock held and
// nothing mapped; with the loop device attached before mkfs and mount. After
// a restart no lock, loop device or mount is left (a lock with nothing
// mounted is released by recovery) and the next mount, on another host,
// works and finds the data.
func faultKill9MidMount(t *testing.T) {
	e := newFaultEnv(t, "vpf-k9m", 3)
	a, b := e.startHost("hostA", ""), e.startHost("hostB", "")
	inPlugin := []stepRow{
		{step: "mount.before-lock", label: "mount: before the lock request"},
		{step: "mount.locked", label: "mount: lock held, nothing mapped"},
		{step: "local.mount.attached", label: "mount: loop attached, before mkfs"},
	}
	inMaster := []stepRow{{step: "lock.granted", label: "mount: lock granted, answer lost"}}
	for i := range inPlugin {
		inPlugin[i].vol = fmt.Sprintf("policy1/k9m%d", i)
		e.createVolume(a, inPlugin[i].vol)
	}
	inMaster[0].vol = "policy1/k9mvm"
	e.createVolume(a, inMaster[0].vol)

	_ = a.p.stop()
	_ = e.vm.stop()
	e.startVolmasterAt(entries(inMaster))
	a = e.startHostAt("hostA", "", entries(inPlugin))
	all := append(append([]stepRow{}, inPlugin...), inMaster...)
	var wg sync.WaitGroup
	for _, r := range all {
		wg.Add(1)
		go func() { defer wg.Done(); a.mount(t, r.vol, "c1") }()
	}
	waitReached(t, a.p, strings.Split(entries(inPlugin), ",")...)
	waitReached(t, e.vm.proc, inMaster[0].entry())
	// The kill lands where each row says.
	for _, r := range all {
		if locked := e.holder(r.vol) == "hostA"; locked != (r.step != "mount.before-lock") {
			t.Fatalf("%s: hostA holds the lock: %v", r.label, locked)
		}
		if attached := loops(t, e.image(r.vol)) != ""; attached != (r.step == "local.mount.attached") {
			t.Fatalf("%s: loop device attached: %v", r.label, attached)
		}
	}
	_ = a.p.signal(syscall.SIGKILL)
	wg.Wait()
	// The lock request answered to nobody: volmaster goes on without the
	// fault injector.
	_ = e.vm.stop()
	e.startVolmaster()
	e.startHost("hostA", "")

	for _, r := range all {
		var c faultCounts
		e.finish(&c, map[string][]string{r.vol: nil})
		if _, errMsg := b.mount(t, r.vol, "b1"); errMsg != "" {
			t.Errorf("%s: the next mount, on hostB: %s", r.label, errMsg)
		} else if errMsg := b.unmount(t, r.vol, "b1"); errMsg != "" {
			t.Errorf("%s: unmount on hostB: %s", r.label, errMsg)
		}
		c.LocksLost = e.lostLocks()
		recordRow(t, faultRow{Fault: "kill -9 volplugin", Step: r.label, Counts: c})
	}
}

// volOp is an operation volcli asks volmaster for, cut short by a kill.
type volOp struct {
	stepRow
	args func(vol string) []string
	// existing: the volume exists (with its marker) before the fault;
	// writing: a container writes to it on host A meanwhile.
	existing, writing bool
}

// kill -9 of volmaster in the middle of create, remove, snapshot and resize
// (local backend), one volume per step, all in one kill. After the restart
// the operations cut short are recovered (finished or undone) by volmaster:
// no record without an image or image without a record, no snapshot without
// a record, no operation lock or intent left; a retried request works; the
// volume is usable (its data intact) and removable. A volume mounted on host
// A while volmaster snapshots it is frozen at the kill: its writer goes on
// (the thaw guard thaws it).
func faultKill9Volmaster(t *testing.T) {
	e := newFaultEnv(t, "vpf-k9vm", 2)
	// Host A mounts under volmaster's mount root, where the local backend
	// finds (and freezes) a mounted volume it snapshots.
	a := e.startHost("hostA", filepath.Join(e.data, "mnt"))
	create := func(vol string) []string { return []string{"volume", "create", vol} }
	remove := func(vol string) []string { return []string{"volume", "remove", vol} }
	snapshot := func(vol string) []string { return []string{"volume", "snapshot", "take", vol} }
	resize := func(vol string) []string { return []string{"volume", "resize", vol, "48MB"} }
	ops := []volOp{
		{stepRow: stepRow{step: "create.recorded", label: "create: record, no image yet"}, args: create},
		{stepRow: stepRow{step: "create.made", label: "create: image made, lock held"}, args: create},
		{stepRow: stepRow{step: "remove.locked", label: "remove: locked, image still there"}, args: remove, existing: true},
		{stepRow: stepRow{step: "remove.destroyed", label: "remove: image trashed, record kept"}, args: remove, existing: true},
		{stepRow: stepRow{step: "local.snapshot.frozen", label: "snapshot: fs frozen while written"}, args: snapshot, existing: true, writing: true},
		{stepRow: stepRow{step: "snapshot.made", label: "snapshot: made, not recorded"}, args: snapshot, existing: true},
		{stepRow: stepRow{step: "resize.grown", label: "resize: image grown, record not"}, args: resize, existing: true},
	}
	var rows []stepRow
	var w *writer
	var frozen string
	for i := range ops {
		op := &ops[i]
		op.vol = fmt.Sprintf("policy1/k9vm%d", i)
		rows = append(rows, op.stepRow)
		if !op.existing {
			continue
		}
		e.createVolume(a, op.vol)
		if op.writing {
			frozen, w = e.mountWriting(a, op.vol, "c1")
			t.Cleanup(func() { _ = exec.Command("fsfreeze", "--unfreeze", frozen).Run() })
		}
	}

	_ = e.vm.stop()
	e.startVolmasterAt(entries(rows))
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Add(1)
		go func() { defer wg.Done(); volcli(t, e.vm.URL, "", op.args(op.vol)...) }()
	}
	waitReached(t, e.vm.proc, strings.Split(entries(rows), ",")...)
	// The kill lands where each row says.
	for _, op := range ops {
		fi, err := os.Stat(e.image(op.vol))
		hasImage := err == nil
		snaps := e.snapshotFiles(op.vol)
		var ok bool
		switch op.step {
		case "create.recorded":
			ok = e.recordExists(op.vol) && !hasImage
		case "remove.destroyed":
			ok = e.recordExists(op.vol) && !hasImage
		case "create.made", "remove.locked":
			ok = e.recordExists(op.vol) && hasImage
		case "snapshot.made":
			ok = len(snaps) == 1
		case "local.snapshot.frozen":
			ok = len(snaps) == 0 && hasImage
		case "resize.grown":
			want, _ := config.ParseSize("48MB")
			ok = hasImage && fi.Size() == want && e.volumeSize(op.vol) == "32MB"
		}
		if !ok {
			t.Fatalf("%s: the kill would not land there (image %v, snapshots %v)", op.label, hasImage, snaps)
		}
	}
	before := w.writes.Load()
	_ = e.vm.signal(syscall.SIGKILL)
	wg.Wait() // volcli gives up: nothing listens
	e.startVolmaster()

	var thawed bool
	waitForQuiet(t, 10*time.Second, func() bool { thawed = w.writes.Load() > before+5; return thawed })
	if !thawed {
		_ = exec.Command("fsfreeze", "--unfreeze", frozen).Run() // or the writer never stops
	}
	cli := e.etcdClient()
	waitForQuiet(t, 20*time.Second, func() bool { return len(e.opsInFlight(cli)) == 0 })
	inFlight := e.opsInFlight(cli)

	for _, op := range ops {
		var c faultCounts
		if inFlight[op.vol] {
			c.LeakedLocks++
		}
		e.countOrphans(&c, op.vol)
		// The request again, as a client whose answer was lost would.
		_, errOut, code := volcli(t, e.vm.URL, "", op.args(op.vol)...)
		exists := e.recordExists(op.vol)
		switch {
		case code == 0:
		case code == 4 && op.args(op.vol)[1] == "create" && exists:
			// The create was finished: the volume is there (409 exists).
		case code == 3 && op.args(op.vol)[1] == "remove" && !exists:
			// The remove was finished (the image was gone already).
		default:
			t.Errorf("%s: retried volcli %v: exit %d: %s", op.label, op.args(op.vol), code, errOut)
		}
		e.countOrphans(&c, op.vol)
		if op.writing {
			if !thawed {
				c.FailedWrites++ // frozen for good by a dead volmaster
			}
			_, failed := w.halt()
			c.FailedWrites += int(failed)
		}
		_, err := os.Stat(e.image(op.vol))
		switch exists = e.recordExists(op.vol); {
		case exists && err != nil:
			t.Errorf("%s: a record without an image: the volume cannot be used", op.label)
		case exists:
			if !op.existing {
				e.writeMarker(a, op.vol)
			}
			ids := []string(nil)
			if op.writing {
				ids = []string{"c1"}
			}
			e.finish(&c, map[string][]string{op.vol: ids})
			if _, errOut, code := volcli(t, e.vm.URL, "", "volume", "remove", op.vol); code != 0 {
				t.Errorf("%s: volume remove afterwards: exit %d: %s", op.label, code, errOut)
			}
			e.countOrphans(&c, op.vol)
		}
		c.LocksLost = e.lostLocks()
		recordRow(t, faultRow{Fault: "kill -9 volmaster", Step: op.label, Counts: c})
	}
	if got := e.volumeSize("policy1/k9vm6"); got != "" && got != "48MB" {
		t.Errorf("resize cut short: record says %s after recovery and a retry, want 48MB", got)
	}
}

// opsInFlight lists the volumes with an operation lock or an intent (an
// operation not finished or not yet recovered).
func (e *faultEnv) opsInFlight(cli *clientv3.Client) map[string]bool {
	keys, _ := config.NewKeys("")
	out := map[string]bool{}
	for _, prefix := range []string{keys.OpLocks(), keys.Intents()} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err != nil {
			e.t.Fatalf("read %s: %v", prefix, err)
		}
		for _, kv := range resp.Kvs {
			if ref, ok := keys.ParseRef(prefix, string(kv.Key)); ok {
				out[ref.String()] = true
			}
		}
	}
	return out
}

func (e *faultEnv) recordExists(vol string) bool {
	_, _, code := volcli(e.t, e.vm.URL, "", "volume", "get", vol)
	return code == 0
}

func (e *faultEnv) volumeSize(vol string) string {
	out, _, code := volcli(e.t, e.vm.URL, "", "volume", "get", vol)
	if code != 0 {
		return ""
	}
	var v config.Volume
	_ = json.Unmarshal([]byte(out), &v)
	return v.Create.Size
}

// countOrphans counts an image without a record or a record without an
// image, and snapshot files without a record (LeakedImages).
func (e *faultEnv) countOrphans(c *faultCounts, vol string) {
	e.t.Helper()
	_, err := os.Stat(e.image(vol))
	hasImage := err == nil
	exists := e.recordExists(vol)
	if hasImage != exists {
		e.t.Logf("%s: record %v, image %v", vol, exists, hasImage)
		c.LeakedImages++
	}
	files := e.snapshotFiles(vol)
	recorded := 0
	if exists {
		for _, n := range snapshotsBy(e.t, e.vm.URL, vol) {
			recorded += n
		}
	}
	if len(files) != recorded {
		e.t.Logf("%s: %d snapshot files, %d records", vol, len(files), recorded)
		c.LeakedImages++
	}
}

// snapshotFiles lists vol's snapshot files in the local backend.
func (e *faultEnv) snapshotFiles(vol string) []string {
	ref, _ := config.ParseVolumeRef(vol)
	files, _ := filepath.Glob(filepath.Join(e.data, "local", "snapshots", ref.Policy, ref.Name, "*.img"))
	return files
}

// loops lists the loop devices attached to image (losetup -j), one a line.
func loops(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-j", image).Output()
	if err != nil {
		t.Fatalf("losetup -j: %v", err)
	}
	return strings.TrimSpace(string(out))
}
