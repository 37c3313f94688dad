package systemtests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// Fault rows with real containers: a private dockerd per host (its own
// plugins dir, seeing only that host's volplugin socket, and the host's mount
// root shared into it), containers that write through the plugin's mounts.

// startDocker starts a private dockerd for host h (whose volplugin runs
// already: Docker finds the plugin socket at start) and builds the test image.
func (e *faultEnv) startDocker(h *faultHost, name string) (*dockertest.Daemon, string) {
	e.t.Helper()
	if err := os.MkdirAll(h.root, 0o755); err != nil {
		e.t.Fatal(err)
	}
	d := dockertest.Start(e.t, name, dockertest.WithPluginsDir(h.sockDir), dockertest.WithSharedMount(h.root))
	return d, d.Image(e.t)
}

// containerWriter is a container appending numbered lines to /data/<file>
// with fsync, every 50 ms; it prints "fail N" for each failed write.
type containerWriter struct {
	t          *testing.T
	d          *dockertest.Daemon
	name, file string
}

func startContainerWriter(t *testing.T, d *dockertest.Daemon, img, name, vol, file string) *containerWriter {
	t.Helper()
	script := fmt.Sprintf(`i=0; while :; do i=$((i+1)); echo $i | gnudd of=/data/%[1]s oflag=append conv=notrunc,fsync status=none || echo fail $i; sleep 0.05; done`, file)
	docker(t, d, "run", "-d", "--name", name, "-v", vol+":/data", img, "sh", "-c", script)
	return &containerWriter{t: t, d: d, name: name, file: file}
}

// lines is how many lines the writer's file holds, read in its container
// (-1 if that fails).
func (w *containerWriter) lines() int {
	out, _, err := w.d.Docker(context.Background(), "exec", w.name, "sh", "-c", "wc -l < /data/"+w.file)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return -1
	}
	return n
}

// advances waits until the file has grown by n lines from now.
func (w *containerWriter) advances(n int, d time.Duration) bool {
	from := w.lines()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := w.lines(); from >= 0 && l >= from+n {
			return true
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	return false
}

// failures counts the writer's failed writes; if there are none it checks
// that the file holds 1..N in order (no write lost or doubled), a broken
// sequence counting as one.
func (w *containerWriter) failures() int {
	w.t.Helper()
	logs := docker(w.t, w.d, "logs", w.name)
	if n := strings.Count(logs, "fail "); n > 0 {
		w.t.Errorf("container %s: %d failed writes:\n%s", w.name, n, logs)
		return n
	}
	out := docker(w.t, w.d, "exec", w.name, "cat", "/data/"+w.file)
	for i, l := range strings.Fields(out) {
		if l != strconv.Itoa(i+1) {
			w.t.Errorf("container %s: line %d of %s is %q", w.name, i+1, w.file, l)
			return 1
		}
	}
	return 0
}

// running reports whether the container still runs.
func (w *containerWriter) running() bool {
	out, _, err := w.d.Docker(context.Background(), "inspect", "-f", "{{.State.Running}}", w.name)
	return err == nil && strings.TrimSpace(out) == "true"
}

// stop removes the container (Docker unmounts its volume).
func (w *containerWriter) stop() { docker(w.t, w.d, "rm", "-f", w.name) }

// mountIDs counts the Docker mount IDs h holds for vol.
func mountIDs(t *testing.T, h *faultHost, vol string) int {
	t.Helper()
	ms, _ := h.info(t)["mounts"].([]any)
	for _, m := range ms {
		if mm, _ := m.(map[string]any); mm["volume"] == vol {
			ids, _ := mm["mount-ids"].([]any)
			return len(ids)
		}
	}
	return 0
}

// newMountWithin runs a new container on vol until it works, and returns how
// long that took.
func newMountWithin(t *testing.T, d *dockertest.Daemon, img, vol string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var errOut string
	for time.Since(start) < limit {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		_, e, err := d.Docker(ctx, "run", "--rm", "-v", vol+":/data", img, "cat", "/data/marker")
		cancel()
		if err == nil {
			return time.Since(start)
		}
		errOut = e
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	t.Fatalf("no new container could mount %s within %s: %s", vol, limit, errOut)
	return 0
}

// Containers write through the plugin while volmaster is down for 60 s:
// they keep writing, a second container joins the mounted volume meanwhile
// and stops before volmaster returns (its unmount arrives), no lock is lost,
// and a new container mount works within 5 s of volmaster's return.
func faultVolmasterDown60s(t *testing.T) {
	e := newFaultEnv(t, "vpf-60", 3)
	a := e.startHost("hostA", "")
	d, img := e.startDocker(a, "vpf-60")
	const vol, vol2 = "policy1/long", "policy1/long2"
	e.createVolume(a, vol)
	e.createVolume(a, vol2)
	w1 := startContainerWriter(t, d, img, "w1", vol, "log1")
	if !w1.advances(5, 15*time.Second) {
		t.Fatal("container w1 does not write")
	}
	var c faultCounts
	_ = e.vm.stop()
	down := time.Now()
	// A second container on the mounted volume while volmaster is away:
	// a refcount on this host, no volmaster needed.
	w2 := startContainerWriter(t, d, img, "w2", vol, "log2")
	// The fault lasts 60 s; meanwhile both containers must go on writing.
	for time.Since(down) < 60*time.Second {
		for _, w := range []*containerWriter{w1, w2} {
			if !w.advances(5, 10*time.Second) {
				c.FailedWrites++
				t.Errorf("container %s stopped writing %s after volmaster went down", w.name, time.Since(down).Round(time.Second))
			}
		}
		time.Sleep(2 * time.Second) // the fault lasts 60 s: check the writers every few seconds
	}
	// A container stops while volmaster is still away: Docker asks Get,
	// then Unmount, which must arrive (the other container keeps the mount).
	c.FailedWrites += w2.failures()
	w2.stop()
	if ids := mountIDs(t, a, vol); ids != 1 {
		c.LeakedMounts++
		t.Errorf("%s has %d mount IDs on hostA after w2 stopped without volmaster, want 1 (w1's)", vol, ids)
	}
	e.startVolmaster()
	took := newMountWithin(t, d, img, vol2, 30*time.Second)
	t.Logf("a new container mounted %s %s after volmaster returned (down %s)", vol2, took.Round(10*time.Millisecond), time.Since(down).Round(time.Second))
	if took > 5*time.Second {
		t.Errorf("new mounts came back %s after volmaster, want within 5s", took)
	}
	waitFor(t, 10*time.Second, "hostA's lock back", func() bool { return e.holder(vol) == "hostA" })
	if !w1.running() {
		t.Errorf("container %s is not running", w1.name)
	}
	c.FailedWrites += w1.failures()
	t.Logf("w1 wrote %d lines across the outage", w1.lines())
	w1.stop()
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil, vol2: nil})
	recordRow(t, faultRow{Fault: "volmaster down 60 s, containers writing", Step: "lease renewal, new mount", Counts: c})
}

// Two containers on one volume across a volplugin restart longer than the
// TTL: the lock expired meanwhile, the restarted volplugin takes it again
// for both mount IDs; when one container stops the other keeps writing.
func faultRestartLongerThanTTL(t *testing.T) {
	e := newFaultEnv(t, "vpf-ttl", 2)
	a := e.startHost("hostA", "")
	d, img := e.startDocker(a, "vpf-ttl")
	const vol = "policy1/two"
	e.createVolume(a, vol)
	w1 := startContainerWriter(t, d, img, "w1", vol, "log1")
	w2 := startContainerWriter(t, d, img, "w2", vol, "log2")
	for _, w := range []*containerWriter{w1, w2} {
		if !w.advances(5, 15*time.Second) {
			t.Fatalf("container %s does not write", w.name)
		}
	}
	var c faultCounts
	_ = a.p.signal(syscall.SIGKILL)
	waitFor(t, 15*time.Second, "the lock to expire with the lease", func() bool { return e.holder(vol) == "" })
	e.startHost("hostA", "")
	waitFor(t, 10*time.Second, "hostA holds the lock again", func() bool { return e.holder(vol) == "hostA" })
	c.FailedWrites += w1.failures()
	w1.stop()
	if len(e.mountsOfImage(vol)) == 0 {
		c.UsedRemoved++ // unmounted under the other container
	}
	if !w2.advances(10, 10*time.Second) {
		c.FailedWrites++
		t.Error("container w2 stopped writing after w1 stopped")
	}
	if e.holder(vol) != "hostA" {
		c.LocksLost++
	}
	c.FailedWrites += w2.failures()
	w2.stop()
	c.LocksLost += e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "2 containers, volplugin down longer than TTL", Step: "restart, then one container stops", Counts: c})
}

// A cold boot where volmaster comes up last: volplugin starts while
// volmaster is down and keeps the container's mount and its writes; Docker
// still sees the plugin (inspect answers for the mounted volume), a new
// container mount fails saying volmaster is unreachable, and works once
// volmaster is back.
func faultStartWhileVolmasterDown(t *testing.T) {
	e := newFaultEnv(t, "vpf-cold", 3)
	a := e.startHost("hostA", "")
	d, img := e.startDocker(a, "vpf-cold")
	const vol, vol2 = "policy1/cold", "policy1/cold2"
	e.createVolume(a, vol)
	e.createVolume(a, vol2)
	// Docker knows vol2 as the plugin's (as after docker volume create -d),
	// so a mount of it goes to the plugin even when its Get cannot answer.
	docker(t, d, "volume", "create", "-d", "vpf-cold", vol2)
	w := startContainerWriter(t, d, img, "w1", vol, "log")
	if !w.advances(5, 15*time.Second) {
		t.Fatal("container w1 does not write")
	}
	var c faultCounts
	_ = a.p.stop()
	_ = e.vm.stop()
	a = e.startHost("hostA", "")
	if !strings.Contains(toJSON(a.info(t)["mounts"]), vol) {
		c.LeakedMounts++
		t.Errorf("volplugin started without volmaster did not keep its mount")
	}
	if !w.advances(5, 10*time.Second) {
		c.FailedWrites++
		t.Error("the container stopped writing when volplugin restarted without volmaster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	if _, errOut, err := d.Docker(ctx, "volume", "inspect", vol); err != nil {
		t.Errorf("docker volume inspect %s without volmaster: %v %s", vol, err, errOut)
	}
	_, errOut, err := d.Docker(ctx, "run", "--rm", "-v", vol2+":/data", img, "true")
	cancel()
	if err == nil || !strings.Contains(errOut, "unreachable") {
		t.Errorf("new container mount without volmaster: %v %q, want an error saying volmaster is unreachable", err, errOut)
	}
	e.startVolmaster()
	took := newMountWithin(t, d, img, vol2, 30*time.Second)
	t.Logf("a new container mounted %s %s after volmaster returned", vol2, took.Round(10*time.Millisecond))
	waitFor(t, 10*time.Second, "hostA's lock", func() bool { return e.holder(vol) == "hostA" })
	if !w.running() {
		t.Error("container w1 is not running")
	}
	c.FailedWrites += w.failures()
	w.stop()
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil, vol2: nil})
	recordRow(t, faultRow{Fault: "volplugin started while volmaster down", Step: "start (dockerd running)", Counts: c})
}
