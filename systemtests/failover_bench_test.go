package systemtests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// BenchmarkFailoverAfterKill9 measures how soon a volume follows its
// container to another host after the volplugin holding it is killed
// with -9: from the kill until host B's Mount succeeds. Host A's lease must
// expire first, so the reference is the lease TTL (3 s here), set in the
// same run; the figure above it is how late B notices and mounts. Real
// volmaster and volplugin processes, the local backend, the plugin socket
// driven directly (no dockerd).
func BenchmarkFailoverAfterKill9(b *testing.B) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(b, "needs root for loop devices and mounts")
	}
	const ttl = 3
	data := b.TempDir()
	vm := startVolmaster(b, data)
	if _, e, code := volcli(b, vm.URL, fmt.Sprintf(`{"TTL": %d, "Timeout": 1}`, ttl), "global", "upload"); code != 0 {
		b.Fatalf("global upload: %s", e)
	}
	if _, e, code := volcli(b, vm.URL, `{"backend":"local","create":{"size":"32MB"}}`, "policy", "upload", "policy1"); code != 0 {
		b.Fatalf("policy upload: %s", e)
	}
	const plugin = "vpbench-failover"
	sockA, sockB := filepath.Join(data, "plugins-a"), filepath.Join(data, "plugins-b")
	mntA, mntB := filepath.Join(data, "mnt-a"), filepath.Join(data, "mnt-b")
	for _, d := range []string{sockA, sockB, mntA, mntB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	startA := func() (*proc, string) {
		p := startVolplugin(b, vm, data, plugin, "hostA", "--socket-dir", sockA, "--mount-root", mntA)
		return p, p.lines["volplugin socket"]
	}
	vpB := startVolplugin(b, vm, data, plugin, "hostB", "--socket-dir", sockB, "--mount-root", mntB)
	onB := vpB.lines["volplugin socket"]
	var took []time.Duration
	for i := range b.N {
		b.StopTimer()
		vol := fmt.Sprintf("policy1/failover%d", i)
		vpA, onA := startA()
		if _, e := pluginCall(b, onA, "Create", map[string]string{"Name": vol}); e != "" {
			b.Fatalf("Create %s: %s", vol, e)
		}
		if _, e := pluginCall(b, onA, "Mount", map[string]string{"Name": vol, "ID": "a"}); e != "" {
			b.Fatalf("Mount %s on host A: %s", vol, e)
		}
		b.StartTimer()
		if err := vpA.signal(syscall.SIGKILL); err == nil {
			b.Fatal("volplugin A survived SIGKILL?")
		}
		killed := time.Now()
		for {
			_, e := pluginCall(b, onB, "Mount", map[string]string{"Name": vol, "ID": "b"})
			if e == "" {
				break
			}
			if !strings.Contains(e, `"hostA"`) || time.Since(killed) > ttl*time.Second+time.Minute {
				b.Fatalf("Mount %s on host B after A's kill -9: %s", vol, e)
			}
			time.Sleep(20 * time.Millisecond) // polling interval: the figure's resolution
		}
		took = append(took, time.Since(killed))
		b.StopTimer()
		if _, e := pluginCall(b, onB, "Unmount", map[string]string{"Name": vol, "ID": "b"}); e != "" {
			b.Fatalf("Unmount %s on host B: %s", vol, e)
		}
		// A's restart adopts the mount it left behind (its lock now lost)
		// and unmounts it, so no loop device or mount outlives the run.
		vpA, onA = startA()
		if _, e := pluginCall(b, onA, "Unmount", map[string]string{"Name": vol, "ID": "a"}); e != "" {
			b.Fatalf("Unmount %s on restarted host A: %s", vol, e)
		}
		if err := vpA.stop(); err != nil {
			b.Fatalf("stop volplugin A: %v", err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "failover-ms")
	b.ReportMetric(ttl*1000, "ttl-ms")
	b.ReportMetric(0, "ns/op")
}
