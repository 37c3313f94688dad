package iolimit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHost is a FAKE /proc tree and FAKE cgroupfs directories in a temp dir.
// The files stand for the kernel's files: /proc/<pid>/ns/mnt (a symlink whose
// target names the mount namespace), /proc/<pid>/mountinfo, /proc/<pid>/cgroup,
// and the blkio.throttle.* / io.max files of cgroup directories. Being plain
// files, a write replaces their content (the kernel would merge per device).
type fakeHost struct {
	t                  *testing.T
	proc, blkio, cgrp2 string
}

const (
	volDev   = "8:16" // the volume's device in the fakes
	otherDev = "8:32"
)

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	d := t.TempDir()
	h := &fakeHost{t: t, proc: filepath.Join(d, "proc"), blkio: filepath.Join(d, "cgroup", "blkio"), cgrp2: filepath.Join(d, "cgroup", "unified")}
	// FAKE /proc/self: the daemon's mount table lists both cgroup hierarchies.
	h.write("proc/self/mountinfo", fmt.Sprintf(
		"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"+
			"38 31 0:35 / %s rw,relatime - cgroup cgroup rw,blkio\n"+
			"39 31 0:36 / %s rw,relatime - cgroup2 cgroup2 rw\n"+
			"40 31 0:37 / /elsewhere rw,relatime - cgroup cgroup rw,memory\n", h.blkio, h.cgrp2))
	h.write("proc/self/cgroup", "7:blkio:/daemon\n0::/daemon\n")
	h.write("proc/net/dev", "")             // non-pid entries are ignored
	h.mkdir("cgroup/blkio/daemon", false)   // FAKE daemon cgroup
	h.mkdir("cgroup/unified/daemon", true)  // FAKE daemon cgroup (v2)
	h.write("cgroup/blkio/"+v1Files[0], "") // FAKE root cgroup files
	return h
}

func (h *fakeHost) write(rel, content string) {
	h.t.Helper()
	p := filepath.Join(filepath.Dir(h.proc), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) read(rel string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(h.proc), rel))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// mkdir creates a FAKE cgroup directory with empty limit files.
func (h *fakeHost) mkdir(rel string, v2 bool) {
	h.t.Helper()
	if v2 {
		h.write(rel+"/io.max", "")
		return
	}
	for _, f := range v1Files {
		h.write(rel+"/"+f, "")
	}
}

// addProc adds a FAKE process: its mount namespace id, the devices in its
// mount table (nil: no mountinfo file at all) and its /proc/<pid>/cgroup.
func (h *fakeHost) addProc(pid, ns int, devs []string, cgroup string) {
	h.t.Helper()
	dir := filepath.Join(h.proc, fmt.Sprint(pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("mnt:[%d]", 4026531840+ns), filepath.Join(dir, "ns", "mnt")); err != nil {
		h.t.Fatal(err)
	}
	if devs != nil {
		var b strings.Builder
		b.WriteString("600 500 0:50 / / rw,relatime - overlay overlay rw\n")
		for i, d := range devs {
			fmt.Fprintf(&b, "%d 600 %s / /data%d rw,relatime - ext4 /dev/x rw\n", 601+i, d, i)
		}
		h.write(fmt.Sprintf("proc/%d/mountinfo", pid), b.String())
	}
	h.write(fmt.Sprintf("proc/%d/cgroup", pid), cgroup)
}

func fakeDevNum(p string) (uint32, uint32, error) {
	switch p {
	case "/dev/vol":
		return 8, 16, nil
	case "/dev/other":
		return 8, 32, nil
	}
	return 0, 0, fmt.Errorf("no device %s", p)
}

// standardProcs populates the fake host with the scenario used by most tests.
func (h *fakeHost) standardProcs() {
	h.addProc(1, 1, []string{"254:0"}, "7:blkio:/\n0::/\n")                                                 // host init: root cgroup, no volume
	h.addProc(100, 2, []string{"254:0", volDev}, "9:name=systemd:/docker/aaa\n7:blkio:/docker/aaa\n0::/\n") // container A
	h.addProc(101, 2, nil, "7:blkio:/docker/aaa\n0::/\n")                                                   // same ns: no mountinfo read needed
	h.addProc(102, 2, nil, "7:blkio:/docker/aaa-exec\n0::/\n")                                              // same ns, other cgroup
	h.addProc(200, 3, []string{otherDev}, "7:blkio:/docker/bbb\n0::/\n")                                    // container B: other device
	h.addProc(300, 4, []string{volDev}, "7:blkio:/daemon\n0::/daemon\n")                                    // daemon's own cgroup: skipped
	h.addProc(400, 5, []string{volDev}, "7:blkio:/\n0::/\n")                                                // root cgroup: skipped
	h.addProc(500, 6, []string{volDev}, "0::/docker/ccc\n")                                                 // v2-only container
	h.mkdir("cgroup/blkio/docker/aaa", false)
	h.mkdir("cgroup/blkio/docker/aaa-exec", false)
	h.mkdir("cgroup/blkio/docker/bbb", false)
	h.mkdir("cgroup/unified/docker/ccc", true)
}

func (h *fakeHost) manager() *Manager {
	return NewManager(Options{ProcRoot: h.proc, DeviceNumber: fakeDevNum})
}

func TestDiscover(t *testing.T) {
	h := newFakeHost(t)
	h.standardProcs()
	m := h.manager()
	got, err := m.Discover(map[Device]bool{{8, 16}: true, {8, 32}: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Device][]Cgroup{
		{8, 16}: {
			{Dir: filepath.Join(h.blkio, "docker/aaa")},
			{Dir: filepath.Join(h.blkio, "docker/aaa-exec")},
			{Dir: filepath.Join(h.cgrp2, "docker/ccc"), V2: true},
		},
		{8, 32}: {{Dir: filepath.Join(h.blkio, "docker/bbb")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Discover:\n got %v\nwant %v", got, want)
	}
}

func TestDiscoverReadsMountinfoOncePerNamespace(t *testing.T) {
	h := newFakeHost(t)
	// pid 10 and 11 share a namespace; 10's FAKE mountinfo lacks the device,
	// 11's has it. Reading only the first pid's mountinfo of the namespace
	// means the namespace is judged by pid 10 alone.
	h.addProc(10, 7, []string{"254:0"}, "7:blkio:/docker/x\n")
	h.addProc(11, 7, []string{volDev}, "7:blkio:/docker/x\n")
	h.mkdir("cgroup/blkio/docker/x", false)
	got, err := h.manager().Discover(map[Device]bool{{8, 16}: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("mountinfo read more than once per namespace: %v", got)
	}
}

func TestSetAppliesV1AndV2(t *testing.T) {
	h := newFakeHost(t)
	h.standardProcs()
	m := h.manager()
	l := Limits{ReadBPS: 1 << 20, WriteBPS: 10 << 20, WriteIOPS: 100}
	if err := m.Set("pol/vol", "/dev/vol", l); err != nil {
		t.Fatal(err)
	}
	for _, cg := range []string{"docker/aaa", "docker/aaa-exec"} {
		for f, want := range map[string]string{
			v1Files[0]: "8:16 1048576",
			v1Files[1]: "8:16 10485760",
			v1Files[2]: "", // 0 and no entry yet: nothing to write
			v1Files[3]: "8:16 100",
		} {
			if got := h.read("cgroup/blkio/" + cg + "/" + f); got != want {
				t.Errorf("%s/%s = %q, want %q", cg, f, got, want)
			}
		}
	}
	if got, want := h.read("cgroup/unified/docker/ccc/io.max"), "8:16 rbps=1048576 wbps=10485760 riops=max wiops=100"; got != want {
		t.Errorf("io.max = %q, want %q", got, want)
	}
	// untouched: other device's container, daemon's cgroup, root cgroup
	for _, f := range []string{"cgroup/blkio/docker/bbb/" + v1Files[1], "cgroup/blkio/daemon/" + v1Files[1], "cgroup/unified/daemon/io.max", "cgroup/blkio/" + v1Files[0]} {
		if got := h.read(f); got != "" {
			t.Errorf("%s = %q, want untouched", f, got)
		}
	}
	wantStatus := []string{filepath.Join(h.blkio, "docker/aaa"), filepath.Join(h.blkio, "docker/aaa-exec"), filepath.Join(h.cgrp2, "docker/ccc")}
	if got := m.Status("pol/vol"); !reflect.DeepEqual(got, wantStatus) {
		t.Errorf("Status = %v, want %v", got, wantStatus)
	}

	// Update: read limit removed (0), write limit changed.
	if err := m.Set("pol/vol", "/dev/vol", Limits{WriteBPS: 5 << 20, WriteIOPS: 100}); err != nil {
		t.Fatal(err)
	}
	if got := h.read("cgroup/blkio/docker/aaa/" + v1Files[0]); got != "8:16 0" {
		t.Errorf("read_bps after update = %q", got)
	}
	if got := h.read("cgroup/blkio/docker/aaa/" + v1Files[1]); got != "8:16 5242880" {
		t.Errorf("write_bps after update = %q", got)
	}
	if got, want := h.read("cgroup/unified/docker/ccc/io.max"), "8:16 rbps=max wbps=5242880 riops=max wiops=100"; got != want {
		t.Errorf("io.max after update = %q, want %q", got, want)
	}

	// Remove clears all limits in the cgroups still alive.
	if err := m.Remove("pol/vol"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{v1Files[0], v1Files[1], v1Files[3]} {
		if got := h.read("cgroup/blkio/docker/aaa/" + f); got != "8:16 0" {
			t.Errorf("%s after Remove = %q, want %q", f, got, "8:16 0")
		}
	}
	if got, want := h.read("cgroup/unified/docker/ccc/io.max"), "8:16 rbps=max wbps=max riops=max wiops=max"; got != want {
		t.Errorf("io.max after Remove = %q, want %q", got, want)
	}
	if got := m.Status("pol/vol"); got != nil {
		t.Errorf("Status after Remove = %v", got)
	}
}

func TestRemoveToleratesVanishedCgroup(t *testing.T) {
	h := newFakeHost(t)
	h.standardProcs()
	m := h.manager()
	if err := m.Set("pol/vol", "/dev/vol", Limits{WriteBPS: 1}); err != nil {
		t.Fatal(err)
	}
	// Container A exits: its FAKE cgroup directory disappears.
	if err := os.RemoveAll(filepath.Join(h.blkio, "docker/aaa")); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("pol/vol"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

func TestSetBadDevice(t *testing.T) {
	h := newFakeHost(t)
	m := h.manager()
	err := m.Set("pol/vol", "/dev/missing", Limits{WriteBPS: 1})
	if err == nil || !strings.Contains(err.Error(), "pol/vol") {
		t.Fatalf("Set with missing device: err = %v", err)
	}
}

func TestApplyErrorHasContext(t *testing.T) {
	err := Apply(Cgroup{Dir: filepath.Join(t.TempDir(), "nope")}, Device{8, 16}, Limits{WriteBPS: 1})
	if err == nil || !strings.Contains(err.Error(), "blkio.throttle") {
		t.Fatalf("err = %v", err)
	}
}

func TestIOMaxLine(t *testing.T) {
	if got, want := IOMaxLine(Device{253, 1}, Limits{WriteIOPS: 7}), "253:1 rbps=max wbps=max riops=max wiops=7"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestDeviceNumber(t *testing.T) {
	if _, _, err := DeviceNumber(filepath.Join(t.TempDir())); err == nil {
		t.Error("directory accepted as block device")
	}
	ents, _ := os.ReadDir("/sys/dev/block")
	if len(ents) == 0 {
		t.Skip("no block devices listed in /sys/dev/block")
	}
	for _, e := range ents {
		// /sys/dev/block/MAJ:MIN -> ../../devices/.../<name>
		target, err := os.Readlink(filepath.Join("/sys/dev/block", e.Name()))
		if err != nil {
			continue
		}
		dev := "/dev/" + filepath.Base(target)
		maj, min, err := DeviceNumber(dev)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%d:%d", maj, min); got != e.Name() {
			t.Fatalf("DeviceNumber(%s) = %s, want %s", dev, got, e.Name())
		}
		return
	}
	t.Skip("no block device node found in /dev")
}

func TestRunPicksUpNewContainers(t *testing.T) {
	h := newFakeHost(t)
	m := h.manager()
	if err := m.Set("pol/vol", "/dev/vol", Limits{WriteBPS: 42}); err != nil {
		t.Fatal(err)
	}
	if got := m.Status("pol/vol"); len(got) != 0 {
		t.Fatalf("Status before container start = %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	// A container starts after Set (Mount): FAKE process and cgroup appear.
	h.mkdir("cgroup/blkio/docker/late", false)
	h.addProc(700, 9, []string{volDev}, "7:blkio:/docker/late\n")

	// Concurrent callers, for the race detector.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				_ = m.Status("pol/vol")
				_ = m.Set(fmt.Sprintf("pol/other%d", i), "/dev/other", Limits{ReadIOPS: uint64(j + 1)})
			}
		}(i)
	}
	wg.Wait()

	want := filepath.Join(h.blkio, "docker/late")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := m.Status("pol/vol"); len(got) == 1 && got[0] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not limit the new container: Status = %v", m.Status("pol/vol"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.read("cgroup/blkio/docker/late/" + v1Files[1]); got != "8:16 42" {
		t.Fatalf("write_bps = %q", got)
	}
}

// Removing a volume that never reached a cgroup returns (and leaves the
// manager usable).
func TestRemoveUnappliedVolume(t *testing.T) {
	m := NewManager(Options{ProcRoot: t.TempDir(), BlkioRoot: t.TempDir(), Cgroup2Root: t.TempDir(),
		DeviceNumber: func(string) (uint32, uint32, error) { return 7, 1, nil }})
	_ = m.Set("p/v", "/dev/fake", Limits{WriteBPS: 1})
	done := make(chan error, 1)
	go func() {
		err := errors.Join(m.Remove("p/v"), m.Remove("never-set"))
		_ = m.Status("p/v")
		done <- errors.Join(err, m.Set("p/w", "/dev/fake", Limits{}))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the manager hung after removing an unapplied volume")
	}
}
