package iolimit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealCgroupV1Throttle checks the mechanism on the real kernel: a process
// in its own blkio cgroup writes with O_DIRECT to an ext4 file system on a
// loop device; the Manager finds the cgroup through the process's mountinfo
// and limits it to 10 MiB/s.
func TestRealCgroupV1Throttle(t *testing.T) {
	const blkioRoot = "/sys/fs/cgroup/blkio"
	if os.Geteuid() != 0 {
		t.Skip("skipping real cgroup v1 test: not root")
	}
	if _, err := os.Stat(filepath.Join(blkioRoot, "blkio.throttle.write_bps_device")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no cgroup v1 blkio hierarchy: %v", err)
		}
		t.Skipf("skipping real cgroup v1 test: no cgroup v1 blkio hierarchy at %s: %v", blkioRoot, err)
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "dd", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping real cgroup v1 test: %s not found", tool)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	cleanup := func(name string, args ...string) {
		t.Cleanup(func() {
			if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
				t.Errorf("cleanup: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
			}
		})
	}

	// Loop device on a sparse file, ext4, mounted in a temp dir.
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	loop := run("losetup", "--find", "--show", img)
	cleanup("losetup", "-d", loop)
	run("mkfs.ext4", "-q", "-F", loop)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", loop, mnt)
	cleanup("umount", mnt)
	maj, min, err := DeviceNumber(loop)
	if err != nil {
		t.Fatal(err)
	}

	// The test's own cgroup.
	name := fmt.Sprintf("volplugin-iolimit-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cg := filepath.Join(blkioRoot, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(cg); err != nil {
			t.Errorf("cleanup: rmdir %s: %v", cg, err)
		}
	})

	// The child moves itself into the cgroup, then runs dd once per line read.
	const script = `echo $$ > "$1/cgroup.procs" || exit 1
echo ready
while read x; do
	dd if=/dev/zero of="$2/f$x" bs=1M count=20 oflag=direct 2>/dev/null || exit 1
	echo done
done`
	cmd := exec.Command("sh", "-c", script, "sh", cg, mnt)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered after the cgroup: runs before its rmdir
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok || got != want {
				t.Fatalf("child: got %q (open=%v), want %q", got, ok, want)
			}
		case <-time.After(within):
			t.Fatalf("child: no %q within %v", want, within)
		}
	}
	const size = 20 << 20
	ddRun := func(n int) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := io.WriteString(stdin, fmt.Sprintf("%d\n", n)); err != nil {
			t.Fatal(err)
		}
		expect("done", 8*time.Second)
		return time.Since(start)
	}
	mibps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	expect("ready", 5*time.Second)

	base := ddRun(1)
	t.Logf("unlimited: 20 MiB in %v (%.1f MiB/s)", base.Round(time.Millisecond), mibps(base))

	m := NewManager(Options{
		// Only our cgroup: don't touch cgroups of unrelated host processes.
		Include: func(p string) bool { return strings.HasPrefix(p, "/volplugin-iolimit-test-") },
	})
	const limit = 10 << 20
	if err := m.Set("test/vol", loop, Limits{WriteBPS: limit}); err != nil {
		t.Fatal(err)
	}
	if got := m.Status("test/vol"); len(got) != 1 || got[0] != cg {
		t.Fatalf("Status = %v, want [%s]", got, cg)
	}
	limited := ddRun(2)
	rate := mibps(limited)
	t.Logf("limited to 10 MiB/s: 20 MiB in %v (%.2f MiB/s = %.2f MB/s)", limited.Round(time.Millisecond), rate, rate*(1<<20)/1e6)
	if rate < 8 || rate > 12 {
		t.Errorf("measured %.2f MiB/s with a 10 MiB/s limit, want 8..12", rate)
	}

	if err := m.Remove("test/vol"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(cg, "blkio.throttle.write_bps_device"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), fmt.Sprintf("%d:%d ", maj, min)) {
		t.Errorf("limit still set after Remove: %q", b)
	}
}

// BenchmarkDiscoverRealProc measures one discovery pass over the host's /proc
// for the device of the root file system (which every mount namespace of the
// host has, so it is the worst case: every process's cgroup file is read).
func BenchmarkDiscoverRealProc(b *testing.B) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.Skip(err)
	}
	f := strings.Fields(strings.SplitN(string(mi), "\n", 2)[0])
	if len(f) < 3 {
		b.Skip("cannot parse /proc/self/mountinfo")
	}
	var d Device
	if _, err := fmt.Sscanf(f[2], "%d:%d", &d.Major, &d.Minor); err != nil {
		b.Skip(err)
	}
	m := NewManager(Options{})
	want := map[Device]bool{d: true}
	for b.Loop() {
		if _, err := m.Discover(want); err != nil {
			b.Fatal(err)
		}
	}
}
