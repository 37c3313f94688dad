package systemtests

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// BenchmarkDockerRunWithVolume is the time the plugin adds to Docker's own
// container start: `docker run --rm IMAGE true` with a volume created
// beforehand (-v policy1/bench:/data: Get, Mount, Unmount through the
// plugin) against the same run without one, alternating, medians. Local
// backend, 64 MB ext4, the first mount (mkfs) outside the measurement.
func BenchmarkDockerRunWithVolume(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for dockerd, loop devices and mounts")
	}
	data := b.TempDir()
	vm := startVolmaster(b, data)
	if _, e, code := volcli(b, vm.URL, `{"backend":"local","create":{"size":"64MB"}}`, "policy", "upload", "policy1"); code != 0 {
		b.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-bench"
	startVolplugin(b, vm, data, plugin, "hostA")
	d := dockertest.Start(b, "vp-bench")
	img := d.Image(b)
	run := func(args ...string) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		t0 := time.Now()
		if out, errOut, err := d.Docker(ctx, append([]string{"run", "--rm", "--network", "none"}, args...)...); err != nil {
			b.Fatalf("docker run %v: %v\n%s%s", args, err, out, errOut)
		}
		return time.Since(t0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, errOut, err := d.Docker(ctx, "volume", "create", "-d", plugin, "policy1/bench"); err != nil {
		b.Fatalf("volume create: %v %s", err, errOut)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, _ = d.Docker(ctx, "volume", "rm", "policy1/bench")
	})
	run("-v", "policy1/bench:/data", img, "true") // formats the volume
	var with, without []time.Duration
	b.ResetTimer()
	for b.Loop() {
		without = append(without, run(img, "true"))
		with = append(with, run("-v", "policy1/bench:/data", img, "true"))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(med(with), "with-volume-ms")
	b.ReportMetric(med(without), "without-ms")
	b.ReportMetric(med(with)-med(without), "added-ms")
	b.ReportMetric(0, "ns/op")
}
