package volplugin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkPluginCycle drives the plugin socket as Docker does (Create,
// Mount, Unmount, Remove of a 64 MB ext4 volume on the local backend, with
// volmaster and etcd in process) and, in the same run, the same steps by
// hand (truncate, losetup, mkfs.ext4, mount, umount, losetup -d, rm). It
// reports the medians per step, the ratio plugin/raw (issue 14, P1) and the
// etcd WAL fsyncs per cycle.
func BenchmarkPluginCycle(b *testing.B) {
	needRoot(b)
	c := startCluster(b)
	root := b.TempDir()
	unmountAll(b, root, c.dataDir)
	h := c.startHost(b, "hostA", root, false)
	step := func(name string, req any) time.Duration {
		t0 := time.Now()
		if _, e := h.call(b, name, req); e != "" {
			b.Fatalf("%s: %s", name, e)
		}
		return time.Since(t0)
	}
	var create, mount, unmount, remove, plugin, raw []time.Duration
	rawDir := b.TempDir()
	// etcd's WAL fsyncs: the durable writes a cycle costs, the floor of
	// its time beyond the raw steps.
	const fsyncs = "etcd_disk_wal_fsync_duration_seconds_count"
	f0 := etcdCounter(b, c.etcd, fsyncs)
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("policy1/cycle%d", i)
		cr := step("Create", map[string]any{"Name": name, "Opts": map[string]string{"size": "64MB"}})
		mo := step("Mount", map[string]string{"Name": name, "ID": "m1"})
		um := step("Unmount", map[string]string{"Name": name, "ID": "m1"})
		rm := step("Remove", map[string]string{"Name": name})
		create, mount, unmount, remove = append(create, cr), append(mount, mo), append(unmount, um), append(remove, rm)
		plugin = append(plugin, cr+mo+um+rm)
		raw = append(raw, rawCycle(b, rawDir, i))
	}
	b.ReportMetric((etcdCounter(b, c.etcd, fsyncs)-f0)/float64(b.N), "etcd-fsyncs/cycle")
	ms := func(d []time.Duration) float64 { return float64(median(d).Microseconds()) / 1000 }
	b.ReportMetric(ms(create), "create-ms")
	b.ReportMetric(ms(mount), "mount-ms")
	b.ReportMetric(ms(unmount), "unmount-ms")
	b.ReportMetric(ms(remove), "remove-ms")
	b.ReportMetric(ms(plugin), "cycle-ms")
	b.ReportMetric(ms(raw), "raw-ms")
	b.ReportMetric(ms(plugin)/ms(raw), "ratio")
	b.ReportMetric(0, "ns/op")
}

// rawCycle runs the plugin's work by hand, as an operator would type it.
func rawCycle(b *testing.B, dir string, i int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img := filepath.Join(dir, fmt.Sprintf("raw%d.img", i))
	mnt := filepath.Join(dir, fmt.Sprintf("mnt%d", i))
	if err := os.Mkdir(mnt, 0o700); err != nil {
		b.Fatal(err)
	}
	run := func(argv ...string) string {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %v %s", argv, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t0 := time.Now()
	run("truncate", "-s", "64M", img)
	dev := run("losetup", "--find", "--show", img)
	run("mkfs.ext4", "-q", "-m0", dev)
	run("mount", dev, mnt)
	run("umount", mnt)
	run("losetup", "--detach", dev)
	run("rm", img)
	return time.Since(t0)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
