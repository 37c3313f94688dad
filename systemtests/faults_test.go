package systemtests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
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

// faultEnv is one cluster for one row: a volmaster on fixed ports (so it can
// be killed and started again at the same address) and volplugin hosts.
type faultEnv struct {
	t                     *testing.T
	data                  string
	listen, etcd, peer    string
	vm                    *volmaster
	hosts                 map[string]*faultHost
	plugin                string
	ttl                   int
	logs                  []*proc
	volmasterURLForPlugin string
	vmExtra               []string // more volmaster flags (--ceph-conf)
}

type faultHost struct {
	name, sockDir, root string
	extra               []string
	p                   *proc
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newFaultEnv starts volmaster (with vmExtra flags) and uploads the global
// config and the local policy policy1.
func newFaultEnv(t *testing.T, plugin string, ttl int, vmExtra ...string) *faultEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the fault suite needs root for loop devices and mounts")
	}
	e := &faultEnv{t: t, data: t.TempDir(), listen: freePort(t), etcd: freePort(t), peer: freePort(t),
		hosts: map[string]*faultHost{}, plugin: plugin, ttl: ttl, vmExtra: vmExtra}
	e.startVolmaster()
	e.volmasterURLForPlugin = e.vm.URL
	if _, errOut, code := volcli(t, e.vm.URL, fmt.Sprintf(`{"TTL": %d, "Timeout": 1}`, ttl), "global", "upload"); code != 0 {
		t.Fatalf("global upload: %s", errOut)
	}
	if _, errOut, code := volcli(t, e.vm.URL, `{"backend":"local","create":{"size":"32MB","filesystem":"ext4"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", errOut)
	}
	t.Cleanup(e.cleanupLeftovers)
	return e
}

func (e *faultEnv) startVolmaster() { e.startVolmasterAt("") }

// startVolmasterAt starts volmaster stopping at faultpoint step ("": none).
func (e *faultEnv) startVolmasterAt(step string) {
	e.t.Helper()
	args := []string{"--listen", e.listen, "--data-dir", e.data, "--mount-root", filepath.Join(e.data, "mnt"),
		"--etcd-listen", "http://" + e.etcd, "--etcd-peer-listen", "http://" + e.peer}
	args = append(args, e.vmExtra...)
	p := startProcEnv(e.t, nil, faultEnvVar(step), "volmaster", args, "volmaster API", "etcd client URL")
	e.vm = &volmaster{proc: p, URL: p.lines["volmaster API"], EtcdURL: p.lines["etcd client URL"]}
	e.logs = append(e.logs, p)
}

// startHost starts (or restarts) volplugin for host name, mounting under
// root ("" keeps the host's previous root).
func (e *faultEnv) startHost(name, root string, extra ...string) *faultHost {
	e.t.Helper()
	return e.startHostAt(name, root, "", extra...)
}

// startHostAt is startHost stopping at faultpoint step ("": none).
func (e *faultEnv) startHostAt(name, root, step string, extra ...string) *faultHost {
	e.t.Helper()
	h := e.hosts[name]
	if h == nil {
		h = &faultHost{name: name, sockDir: filepath.Join(e.data, "plugins-"+name)}
		e.hosts[name] = h
	}
	if root != "" {
		h.root = root
	}
	if h.root == "" {
		h.root = filepath.Join(e.data, "mnt-"+name)
	}
	if extra != nil {
		h.extra = extra
	}
	args := append([]string{"--volmaster", e.volmasterURLForPlugin, "--plugin-name", e.plugin, "--host-label", name,
		"--local-data-dir", filepath.Join(e.data, "local"), "--mount-root", h.root,
		"--state-dir", filepath.Join(e.data, "state-"+name), "--socket-dir", h.sockDir,
		"--metrics-listen", ""}, h.extra...)
	h.p = startProcEnv(e.t, nil, faultEnvVar(step), "volplugin", args, "volplugin socket")
	e.logs = append(e.logs, h.p)
	return h
}

func (h *faultHost) client() *http.Client {
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.p.lines["volplugin socket"])
	}}}
}

// call sends one Docker plugin request and returns the answer and its Err.
func (h *faultHost) call(t *testing.T, method string, body any) (map[string]any, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := h.client().Post("http://plugin/VolumeDriver."+method, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	e, _ := out["Err"].(string)
	return out, e
}

func (h *faultHost) mount(t *testing.T, vol, id string) (string, string) {
	t.Helper()
	out, e := h.call(t, "Mount", map[string]string{"Name": vol, "ID": id})
	mp, _ := out["Mountpoint"].(string)
	return mp, e
}

func (h *faultHost) unmount(t *testing.T, vol, id string) string {
	t.Helper()
	_, e := h.call(t, "Unmount", map[string]string{"Name": vol, "ID": id})
	return e
}

func (h *faultHost) info(t *testing.T) map[string]any {
	return pluginInfo(t, h.p.lines["volplugin socket"])
}

// lostLocks counts "LOCK LOST" reports in every volplugin log of the row.
func (e *faultEnv) lostLocks() int {
	n := 0
	for _, p := range e.logs {
		n += strings.Count(p.logs(), "LOCK LOST")
	}
	return n
}

func (e *faultEnv) image(vol string) string {
	ref, _ := config.ParseVolumeRef(vol)
	return filepath.Join(e.data, "local", "images", ref.Policy, ref.Name+".img")
}

// mountsOfImage lists the mount points of vol's loop devices.
func (e *faultEnv) mountsOfImage(vol string) []string {
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME", "--associated", e.image(vol)).Output()
	devs := strings.Fields(string(out))
	if len(devs) == 0 {
		return nil
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mps []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		i := indexOf(f, "-")
		if i < 0 || i+2 >= len(f) {
			continue
		}
		for _, d := range devs {
			if f[i+2] == d {
				mps = append(mps, f[4])
			}
		}
	}
	return mps
}

func indexOf(f []string, s string) int {
	for i, x := range f {
		if x == s {
			return i
		}
	}
	return -1
}

// hostsMounting counts the hosts whose mount root holds a mount of vol.
func (e *faultEnv) hostsMounting(vol string) int {
	n := 0
	mps := e.mountsOfImage(vol)
	for _, h := range e.hosts {
		for _, mp := range mps {
			if strings.HasPrefix(mp, h.root+"/") || strings.HasPrefix(mp, filepath.Join(e.data, "oldroot-"+h.name)+"/") {
				n++
				break
			}
		}
	}
	return n
}

// holder returns the host holding vol's mount lock ("" if none).
func (e *faultEnv) holder(vol string) string {
	out, _, code := volcli(e.t, e.vm.URL, "", "--json", "use", "get", vol)
	if code != 0 {
		return ""
	}
	var u config.Use
	_ = json.Unmarshal([]byte(out), &u)
	return u.Hostname
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// writer appends to a file in a mounted volume every 20 ms with fsync,
// counting failures, until stopped.
type writer struct {
	failed atomic.Int64
	writes atomic.Int64
	stop   chan struct{}
	done   chan struct{}
}

func startWriter(path string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err == nil {
				_, err = f.WriteString("x")
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if err != nil {
				w.failed.Add(1)
			} else {
				w.writes.Add(1)
			}
		}
	}()
	return w
}

func (w *writer) halt() (writes, failed int64) {
	close(w.stop)
	<-w.done
	return w.writes.Load(), w.failed.Load()
}

// finish unmounts what the row left mounted through the plugins, then
// counts leftovers: locks, loop devices, mounts, images of removed volumes;
// and checks the marker written at the first mount (a reformat loses it).
func (e *faultEnv) finish(c *faultCounts, vols map[string][]string) {
	t := e.t
	t.Helper()
	for vol, ids := range vols {
		for _, h := range e.hosts {
			for _, id := range ids {
				if h.p != nil && !h.p.stopped {
					h.unmount(t, vol, id)
				}
			}
		}
	}
	for vol := range vols {
		waitForQuiet(t, 15*time.Second, func() bool { return e.holder(vol) == "" })
		if e.holder(vol) != "" {
			c.LeakedLocks++
		}
		if len(e.mountsOfImage(vol)) > 0 {
			c.LeakedMounts++
		}
		waitForQuiet(t, 10*time.Second, func() bool { return loops(t, e.image(vol)) == "" })
		if loops(t, e.image(vol)) != "" {
			c.LeakedLoops++
		}
		// Mount once more and read the marker: a reformat would have lost it.
		h := e.anyHost()
		if h == nil {
			continue
		}
		mp, errMsg := h.mount(t, vol, "final-check")
		if errMsg != "" {
			t.Errorf("final mount of %s: %s", vol, errMsg)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(mp, "marker")); err != nil || string(b) != vol {
			c.Reformats++
		}
		h.unmount(t, vol, "final-check")
	}
}

func (e *faultEnv) anyHost() *faultHost {
	for _, h := range e.hosts {
		if h.p != nil && !h.p.stopped {
			return h
		}
	}
	return nil
}

// waitForQuiet is waitFor that does not fail: the caller counts.
func waitForQuiet(t *testing.T, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// cleanupLeftovers unmounts and detaches whatever a failed row left.
func (e *faultEnv) cleanupLeftovers() {
	mps := mountsUnder(e.data)
	for i := len(mps) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", mps[i]).Run()
	}
	imgs, _ := filepath.Glob(filepath.Join(e.data, "local", "images", "*", "*.img"))
	for _, img := range imgs {
		out, _ := exec.Command("losetup", "-j", img).Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok {
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
}

// createVolume creates vol and writes its marker through a first mount on h.
func (e *faultEnv) createVolume(h *faultHost, vol string) {
	e.t.Helper()
	if _, errOut, code := volcli(e.t, e.vm.URL, "", "volume", "create", vol); code != 0 {
		e.t.Fatalf("volume create %s: %s", vol, errOut)
	}
	e.writeMarker(h, vol)
}

// writeMarker writes vol's marker through a mount on h (finish reads it).
func (e *faultEnv) writeMarker(h *faultHost, vol string) {
	e.t.Helper()
	mp, errMsg := h.mount(e.t, vol, "setup")
	if errMsg != "" {
		e.t.Fatalf("first mount of %s: %s", vol, errMsg)
	}
	if err := os.WriteFile(filepath.Join(mp, "marker"), []byte(vol), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if errMsg := h.unmount(e.t, vol, "setup"); errMsg != "" {
		e.t.Fatalf("unmount %s: %s", vol, errMsg)
	}
}

// mountWriting mounts vol on h for mount ID id and starts a writer in it.
func (e *faultEnv) mountWriting(h *faultHost, vol, id string) (string, *writer) {
	e.t.Helper()
	mp, errMsg := h.mount(e.t, vol, id)
	if errMsg != "" {
		e.t.Fatalf("mount %s on %s: %s", vol, h.name, errMsg)
	}
	return mp, startWriter(filepath.Join(mp, "log"))
}

// etcdClient dials the volmaster's embedded etcd, for faults only etcd can
// inject (an operation lock held as long as the test wants).
func (e *faultEnv) etcdClient() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.vm.EtcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
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

// volmaster is unreachable when the container stops: the release is queued
// and done once volmaster is back.
func faultReleaseWhileVolmasterDown(t *testing.T) {
	e := newFaultEnv(t, "vpf-rel", 3)
	a := e.startHost("hostA", "")
	const vol = "policy1/rel"
	e.createVolume(a, vol)
	if _, errMsg := a.mount(t, vol, "c1"); errMsg != "" {
		t.Fatal(errMsg)
	}
	var c faultCounts
	_ = e.vm.stop()
	if errMsg := a.unmount(t, vol, "c1"); errMsg != "" {
		t.Fatalf("unmount while volmaster is down: %s", errMsg)
	}
	e.startVolmaster()
	waitForQuiet(t, 20*time.Second, func() bool { return e.holder(vol) == "" })
	if e.holder(vol) != "" {
		c.LeakedLocks++
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "release while volmaster unreachable", Step: "unmount", Counts: c})
}

// blackhole is a TCP proxy to volmaster that can stop answering (accepting
// and holding connections, forwarding nothing): a half-open peer, which a
// real volmaster cannot be made into on demand. A fault injector, named so.
type blackhole struct {
	ln     net.Listener
	target string
	holed  atomic.Bool
}

func startBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bh := &blackhole{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go bh.serve(c)
		}
	}()
	return bh
}

func (bh *blackhole) serve(c net.Conn) {
	defer c.Close()
	if bh.holed.Load() {
		_, _ = io.Copy(io.Discard, c) // never answer
		return
	}
	u, err := net.Dial("tcp", bh.target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = copyUnlessHoled(bh, c, u); done <- struct{}{} }()
	<-done
}

// copyUnlessHoled forwards answers until the hole opens, then drops them:
// connections made before the fault go half-open too.
func copyUnlessHoled(bh *blackhole, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 && !bh.holed.Load() {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
}

// A half-open connection to volmaster during renewal (shorter than the
// TTL): the renewal times out instead of hanging, is retried, and the lease
// and lock survive.
func faultHalfOpenRenewal(t *testing.T) {
	e := newFaultEnv(t, "vpf-half", 6)
	bh := startBlackhole(t, e.listen)
	e.volmasterURLForPlugin = "http://" + bh.ln.Addr().String()
	a := e.startHost("hostA", "")
	const vol = "policy1/half"
	e.createVolume(a, vol)
	_, w := e.mountWriting(a, vol, "c1")
	var c faultCounts
	lease := func() float64 { l, _ := a.info(t)["lease"].(map[string]any); id, _ := l["id"].(float64); return id }
	before := lease()
	bh.holed.Store(true)
	time.Sleep(3 * time.Second) // the fault lasts half the TTL
	bh.holed.Store(false)
	waitFor(t, 10*time.Second, "a renewal after the half-open period", func() bool {
		l, _ := a.info(t)["lease"].(map[string]any)
		r, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["renewed"]))
		return time.Since(r) < 2*time.Second
	})
	if lease() != before {
		c.LocksLost++ // the lease lapsed
	}
	if e.holder(vol) != "hostA" {
		c.LocksLost++
	}
	_, failed := w.halt()
	c.FailedWrites = int(failed)
	c.LocksLost += e.lostLocks()
	e.finish(&c, map[string][]string{vol: {"c1"}})
	recordRow(t, faultRow{Fault: "half-open TCP to volmaster (3 s, TTL 6 s)", Step: "lease renewal", Counts: c})
}
