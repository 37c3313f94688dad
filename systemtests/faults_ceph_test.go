package systemtests

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Ceph fencing through the daemons (rbd-fuse + loop here). Host A's
// volplugin mounts a volume and a writer (A's container, whose I/O path is
// the filesystem, the loop device and rbd-fuse, all of which outlive the
// volplugin process) appends numbered records with write+fsync. A's
// volplugin is killed with -9; host B mounts once A's lease is gone, fencing
// A's client (lock broken, client blocklisted). Then A's next writes must
// fail, B must read exactly the records A had made durable, and B's own
// writes must survive A's attempts.
//
// Counted: an A write acknowledged after B mounted, or A's late write that
// succeeds, is a DOUBLE mount (two writers); an A write that failed before
// the fence began, or a durable record B does not read, is a failed WRITE.
func faultCephFencing(t *testing.T) {
	conf := cephConf(t)
	const ttl = 3
	e := newFaultEnv(t, "vpf-ceph", ttl, "--ceph-conf", conf)
	const vol = "cephfault/fence"
	t.Cleanup(func() { e.removeCephVolume(vol, true) })
	t.Cleanup(func() { cleanupCephHosts(t, e.data) })
	if _, errOut, code := volcli(t, e.vm.URL, `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"64MB","filesystem":"ext4"}}`, "policy", "upload", "cephfault"); code != 0 {
		t.Fatalf("policy upload: %s", errOut)
	}
	if _, errOut, code := volcli(t, e.vm.URL, "", "volume", "create", vol); code != 0 {
		t.Fatalf("volume create: %s", errOut)
	}
	cephHost := func(name string) []string {
		return []string{"--ceph-conf", conf, "--ceph-mapper", "fuse", "--ceph-run-dir", filepath.Join(e.data, "run-"+name)}
	}
	a := e.startHost("hostA", "", cephHost("hostA")...)
	b := e.startHost("hostB", "", cephHost("hostB")...)
	mpA, errMsg := a.mount(t, vol, "a1")
	if errMsg != "" {
		t.Fatalf("mount on host A: %s", errMsg)
	}
	w := startSeqWriter(filepath.Join(mpA, "log"))
	waitFor(t, 10*time.Second, "host A's first durable records", func() bool { return w.durable() >= 10 })

	// A's handle on its image below the filesystem, opened while A owns it
	// (rbd-fuse opens the image in open(2), which a fenced client never
	// finishes): see the late writes below.
	imgA, err := os.OpenFile(e.imageFile("hostA", vol), os.O_RDWR|syscall.O_DSYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Closing it asks the FUSE daemon too: bounded, as any call into a
	// fenced rbd-fuse.
	closeImgA := func() { _ = within(5*time.Second, imgA.Close) }
	t.Cleanup(closeImgA)
	var c faultCounts
	before := blocklisted(t, conf)
	_ = a.p.signal(syscall.SIGKILL)
	killed := time.Now()
	var fenceStart, mounted time.Time
	var mpB string
	for {
		start := time.Now()
		mp, errMsg := b.mount(t, vol, "b1")
		if errMsg == "" {
			if fenceStart.IsZero() {
				fenceStart = start
			}
			mpB, mounted = mp, time.Now()
			break
		}
		if !strings.Contains(errMsg, "hostA") && fenceStart.IsZero() {
			fenceStart = start // past the lock: this attempt fenced
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("host B still cannot mount %s after A's volplugin was killed: %s", time.Since(killed).Round(time.Second), errMsg)
		}
		time.Sleep(200 * time.Millisecond) // polling interval while A's lease runs out
	}
	t.Logf("host B mounted %s after host A's volplugin was killed (TTL %ds, fencing included)", mounted.Sub(killed).Round(10*time.Millisecond), ttl)
	if newlyBlocklisted(t, conf, before) == 0 {
		t.Error("no new blocklist entry after the takeover: host A was not fenced")
	}

	// A's writer ran through the takeover: stop it (it may be blocked in
	// the kernel on the fenced rbd-fuse; then its attempt never succeeds).
	if !w.halt(30 * time.Second) {
		t.Logf("host A's writer is blocked in a write or fsync 30 s after B mounted (fenced rbd-fuse)")
	}
	var lastOK time.Time
	for _, at := range w.attempts() {
		switch {
		case at.err == nil && at.end.After(mounted):
			c.DoubleMounts++ // acknowledged after B mounted
			t.Errorf("host A's record %d was acknowledged %s after host B mounted", at.seq, at.end.Sub(mounted))
		case at.err != nil && at.end.Before(fenceStart):
			c.FailedWrites++ // failed before anyone fenced A
			t.Errorf("host A's record %d failed before the fence: %v", at.seq, at.err)
		case at.err == nil:
			lastOK = at.end
		}
	}
	t.Logf("host A: %d records durable, the last acknowledged %s after B's fencing mount began and %s before it returned; first failure: %v",
		w.durable(), lastOK.Sub(fenceStart).Round(time.Millisecond), mounted.Sub(lastOK).Round(time.Millisecond), w.firstErr())

	// A's next writes must fail: the container's I/O path is fenced.
	// Once ext4 on A has seen the first refused write it is read-only, so
	// A also writes below the filesystem: the image's first 512 bytes (the
	// boot area, which ext4 leaves alone), with what B reads there, through
	// A's rbd-fuse with O_DSYNC. Were A not fenced it would change nothing.
	head := make([]byte, 512)
	if err := within(30*time.Second, func() error {
		f, err := os.Open(e.imageFile("hostB", vol))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.ReadAt(head, 0)
		return err
	}); err != nil {
		t.Fatalf("host B reads its image: %v", err)
	}
	lateCheck := func(what string, err error) {
		t.Helper()
		switch {
		case err == nil:
			c.DoubleMounts++
			t.Errorf("host A's %s succeeded after it was fenced", what)
		case errors.Is(err, errBlocked):
			// Not a second writer, but the container hangs instead of
			// seeing its I/O path fenced.
			t.Errorf("host A's %s blocked for 20 s instead of failing (fenced rbd-fuse does not answer)", what)
		default:
			t.Logf("host A's %s after the fence failed: %v", what, err)
		}
	}
	lateWrite := func(name string) {
		t.Helper()
		lateCheck("write of "+name, writeSyncWithin(filepath.Join(mpA, name), bytes.Repeat([]byte("late"), 1024), 20*time.Second))
		lateCheck("O_DSYNC write to its image", within(20*time.Second, func() error {
			_, err := imgA.WriteAt(head, 0)
			return err
		}))
	}
	lateWrite("late1")

	// B writes, A tries again, B's data stays.
	bdata := make([]byte, 1<<20)
	_, _ = rand.Read(bdata)
	if err := writeSyncWithin(filepath.Join(mpB, "b.bin"), bdata, 30*time.Second); err != nil {
		c.FailedWrites++
		t.Errorf("host B's write: %v", err)
	}
	lateWrite("late2")
	closeImgA()
	durable := w.durableRecords()
	verify := func(mp, when string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(mp, "log"))
		if err != nil {
			t.Fatalf("host B reads A's log %s: %v", when, err)
		}
		lost, extra := compareRecords(got, durable)
		if lost > 0 {
			c.FailedWrites += lost
			t.Errorf("host B (%s) lacks %d of A's %d durable records", when, lost, len(durable))
		}
		if extra != 0 {
			t.Logf("host B (%s) reads %d records A was not told were durable", when, extra)
		}
		if b, err := os.ReadFile(filepath.Join(mp, "b.bin")); err != nil || !bytes.Equal(b, bdata) {
			c.FailedWrites++
			t.Errorf("host B's own data (%s) is not intact: %v", when, err)
		}
		for _, late := range []string{"late1", "late2"} {
			if _, err := os.Stat(filepath.Join(mp, late)); err == nil {
				c.DoubleMounts++
				t.Errorf("host B (%s) sees %s, written by the fenced host A", when, late)
			}
		}
	}
	verify(mpB, "mounted")
	// Again from the cluster, not B's page cache: unmount and mount anew.
	if errMsg := b.unmount(t, vol, "b1"); errMsg != "" {
		t.Fatalf("unmount on B: %s", errMsg)
	}
	if mpB, errMsg = b.mount(t, vol, "b2"); errMsg != "" {
		t.Fatalf("second mount on B: %s", errMsg)
	}
	verify(mpB, "mounted again")
	if errMsg := b.unmount(t, vol, "b2"); errMsg != "" {
		t.Errorf("unmount on B: %s", errMsg)
	}

	// Host A comes back: it re-adopts its fenced mount and Docker's
	// unmount of it cleans up (filesystem, loop device, rbd-fuse).
	a = e.startHost("hostA", "")
	if errMsg := a.unmount(t, vol, "a1"); errMsg != "" {
		t.Logf("unmount on the fenced host A: %s", errMsg)
	}
	c.LocksLost = e.lostLocks()
	e.finishCeph(&c, vol)
	recordRow(t, faultRow{Fault: "Ceph: kill -9 volplugin A, B takes over", Step: "A writes after the fence", Counts: c})
}

// imageFile is vol's image as host's rbd-fuse shows it.
func (e *faultEnv) imageFile(host, vol string) string {
	img := strings.Replace(vol, "/", ":", 1)
	return filepath.Join(e.data, "run-"+host, "fuse", "rbd", img, img)
}

// finishCeph counts what the row left: vol's lock, loop devices and mounts
// of the row's hosts, rbd-fuse processes, and the image after a remove.
func (e *faultEnv) finishCeph(c *faultCounts, vol string) {
	t := e.t
	t.Helper()
	waitForQuiet(t, 15*time.Second, func() bool { return e.holder(vol) == "" })
	if e.holder(vol) != "" {
		c.LeakedLocks++
	}
	waitForQuiet(t, 15*time.Second, func() bool { return len(loopsUnder(e.data)) == 0 && len(rbdFusePIDs(e.data)) == 0 })
	if l := loopsUnder(e.data); len(l) > 0 {
		c.LeakedLoops += len(l)
		t.Errorf("loop devices left: %v", l)
	}
	if p := rbdFusePIDs(e.data); len(p) > 0 {
		c.LeakedMounts += len(p)
		t.Errorf("rbd-fuse processes left: %v", p)
	}
	if m := mountsUnder(e.data); len(m) > 0 {
		c.LeakedMounts += len(m)
		t.Errorf("mounts left: %v", m)
	}
	if !e.removeCephVolume(vol, false) {
		c.LeakedImages++
	}
}

// removeCephVolume removes vol through volmaster, retrying while the grace
// after the last unmount runs; it reports whether the image is gone. force
// (after a failed row) first records the unmount a dead host never did.
func (e *faultEnv) removeCephVolume(vol string, force bool) bool {
	t := e.t
	if _, _, code := volcli(t, e.vm.URL, "", "volume", "get", vol); code == 3 {
		return true // removed already
	}
	if force {
		_, _, _ = volcli(t, e.vm.URL, "", "use", "force-remove", vol)
	}
	ref := strings.Replace(vol, "/", ":", 1)
	var errOut string
	waitForQuiet(t, 60*time.Second, func() bool {
		var code int
		// Removed into the trash, then purged: nothing stays in the shared
		// cluster's rbd trash.
		errOut, code = removeForGood(t, e.vm.URL, vol)
		return code == 0
	})
	if errOut != "" {
		t.Logf("volume remove %s: %s", vol, errOut)
	}
	gone := !strings.Contains(rbdImages(t, os.Getenv("CEPH_CONF")), ref)
	if !gone && force {
		// A killed host's rbd-fuse leaves the image's exclusive lock behind,
		// which volmaster's remove does not break; rbd rm does.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := execOut(ctx, "rbd", "-c", os.Getenv("CEPH_CONF"), "rm", "-p", "rbd", ref); err != nil {
			t.Logf("rbd rm %s: %v %s", ref, err, out)
		}
	}
	return gone
}

// seqWriter appends numbered fixed-size records to a file, each with
// write+fsync, and keeps every attempt's times and result.
type seqWriter struct {
	path string
	mu   sync.Mutex
	log  []seqAttempt
	stop chan struct{}
	done chan struct{}
}

type seqAttempt struct {
	seq        int
	start, end time.Time
	err        error
}

func seqRecord(seq int) string { return fmt.Sprintf("A%07d\n", seq) }

const seqRecordLen = 9

func startSeqWriter(path string) *seqWriter {
	w := &seqWriter{path: path, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			at := seqAttempt{seq: seq, start: time.Now()}
			at.err = appendSync(path, []byte(seqRecord(seq)))
			at.end = time.Now()
			w.mu.Lock()
			w.log = append(w.log, at)
			w.mu.Unlock()
		}
	}()
	return w
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// halt stops the writer; false if it did not stop within d (blocked).
func (w *seqWriter) halt(d time.Duration) bool {
	close(w.stop)
	select {
	case <-w.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (w *seqWriter) attempts() []seqAttempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]seqAttempt(nil), w.log...)
}

func (w *seqWriter) durable() int { return len(w.durableRecords()) }

func (w *seqWriter) durableRecords() []int {
	var seqs []int
	for _, at := range w.attempts() {
		if at.err == nil {
			seqs = append(seqs, at.seq)
		}
	}
	return seqs
}

func (w *seqWriter) firstErr() error {
	for _, at := range w.attempts() {
		if at.err != nil {
			return at.err
		}
	}
	return nil
}

// compareRecords parses got as seqRecords and returns how many durable
// records it lacks and how many others it holds (a torn tail counts as
// one extra).
func compareRecords(got []byte, durable []int) (lost, extra int) {
	have := map[int]bool{}
	for len(got) >= seqRecordLen {
		rec := string(got[:seqRecordLen])
		got = got[seqRecordLen:]
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rec, "A"), "\n"))
		if err != nil || rec[0] != 'A' || rec[seqRecordLen-1] != '\n' {
			extra++
			continue
		}
		have[n] = true
	}
	if len(got) > 0 {
		extra++
	}
	for _, s := range durable {
		if !have[s] {
			lost++
		}
		delete(have, s)
	}
	return lost, extra + len(have)
}

var errBlocked = errors.New("blocked")

// within runs f and returns its error, or errBlocked if it has not returned
// within d (its goroutine stays blocked until the I/O path answers or dies).
func within(d time.Duration, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		return errBlocked
	}
}

// writeSyncWithin writes data to path with write+fsync, within d.
func writeSyncWithin(path string, data []byte, d time.Duration) error {
	return within(d, func() error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		return errors.Join(err, f.Close())
	})
}

// rbdFusePIDs lists the live rbd-fuse processes whose PID files are under
// dir (<run-dir>/fuse/<pool>/<image>.pid) and whose command line names dir.
func rbdFusePIDs(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, "run-*", "fuse", "*", "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv := strings.Split(string(cmd), "\x00")
		if filepath.Base(argv[0]) == "rbd-fuse" && strings.Contains(string(cmd), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// loopsUnder lists the loop devices whose backing file is under dir, from
// sysfs (losetup stats the backing files, which blocks on a fenced rbd-fuse).
func loopsUnder(dir string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return devs
}

// mountInfoUnder returns the mountinfo entries (fields) whose mount point
// is under dir, in mount order.
func mountInfoUnder(dir string) [][]string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var out [][]string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f)
		}
	}
	return out
}

func mountsUnder(dir string) []string {
	var mps []string
	for _, f := range mountInfoUnder(dir) {
		mps = append(mps, f[4])
	}
	return mps
}

// cleanupCephHosts undoes what a failed Ceph row left under dir, in the
// only order that cannot hang: rbd-fuse processes killed (by the PIDs in
// their PID files), FUSE connections with waiting requests aborted,
// filesystems and FUSE mounts lazily unmounted, loop devices detached.
func cleanupCephHosts(t *testing.T, dir string) {
	for _, pid := range rbdFusePIDs(dir) {
		t.Logf("cleanup: killing rbd-fuse %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitForQuiet(t, 10*time.Second, func() bool { return len(rbdFusePIDs(dir)) == 0 })
	for _, f := range mountInfoUnder(dir) {
		i := indexOf(f, "-")
		if i < 0 || i+1 >= len(f) || !strings.HasPrefix(f[i+1], "fuse") {
			continue
		}
		_, minor, _ := strings.Cut(f[2], ":") // a FUSE connection is named by the minor of its st_dev
		conn := filepath.Join("/sys/fs/fuse/connections", minor)
		if _, err := os.Stat(conn); err != nil {
			_, _ = execOut(context.Background(), "mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections")
		}
		if w, _ := os.ReadFile(filepath.Join(conn, "waiting")); strings.TrimSpace(string(w)) != "0" && len(w) > 0 {
			t.Logf("cleanup: aborting FUSE connection %s (%s waiting)", minor, strings.TrimSpace(string(w)))
			_ = os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0)
		}
	}
	// Detached first (deferred until the filesystem on it goes): once the
	// FUSE mount is unmounted, sysfs no longer names the backing file under dir.
	for _, dev := range loopsUnder(dir) {
		t.Logf("cleanup: detaching %s", dev)
		_, _ = execOut(context.Background(), "losetup", "--detach", dev)
	}
	mps := mountsUnder(dir)
	for i := len(mps) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}
