//go:build cgo && pacific

package volplugin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph"
)

// BenchmarkPluginCycleCeph is BenchmarkPluginCycle on the Ceph dev cluster
// ($CEPH_CONF, from scripts/ceph-dev) with the rbd-fuse mapper, against the
// same steps by hand: rbd create, rbd-fuse, losetup, mkfs.ext4, mount,
// umount, losetup -d, rbd-fuse stopped, rbd rm.
func BenchmarkPluginCycleCeph(b *testing.B) {
	needRoot(b)
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		b.Skip("CEPH_CONF unset: make test and make bench start the cluster with scripts/ceph-dev")
	}
	cb, err := ceph.New(ceph.Config{Conf: conf, Host: "volmaster", MountRoot: b.TempDir(), RunDir: b.TempDir(), Mapper: "fuse"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cb.Close() })
	c := startClusterWith(b, map[string]storage.CRUD{"ceph": cb})
	pol := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)
	if _, _, err := c.api.PutPolicy(context.Background(), pol, []byte(`{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"64MB"}}`)); err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	h := c.startHostWith(b, "hostA", root, Options{CephConf: conf, CephMapper: "fuse", CephRunDir: b.TempDir()})
	step := func(name string, req any) time.Duration {
		t0 := time.Now()
		if _, e := h.call(b, name, req); e != "" {
			b.Fatalf("%s: %s", name, e)
		}
		return time.Since(t0)
	}
	var plugin, raw []time.Duration
	// Each call's own median too, to show which one the overhead is in.
	calls := []string{"Create", "Mount", "Unmount", "Remove"}
	per := make([][]time.Duration, len(calls))
	rawDir := b.TempDir()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("%s/cycle%d", pol, i)
		var d time.Duration
		for j, call := range calls {
			req := map[string]string{"Name": name}
			if call == "Mount" || call == "Unmount" {
				req["ID"] = "m1"
			}
			dj := step(call, req)
			per[j] = append(per[j], dj)
			d += dj
		}
		plugin = append(plugin, d)
		raw = append(raw, rawCephCycle(b, conf, rawDir, fmt.Sprintf("%s-raw%d", pol, i)))
	}
	ms := func(d []time.Duration) float64 { return float64(median(d).Microseconds()) / 1000 }
	b.ReportMetric(ms(plugin), "cycle-ms")
	for j, call := range calls {
		b.ReportMetric(ms(per[j]), strings.ToLower(call)+"-ms")
	}
	b.ReportMetric(ms(raw), "raw-ms")
	b.ReportMetric(ms(plugin)/ms(raw), "ratio")
	b.ReportMetric(0, "ns/op")
}

// rawCephCycle runs the plugin's work on Ceph by hand, as an operator
// would on a host without krbd.
func rawCephCycle(b *testing.B, conf, dir, img string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(argv ...string) string {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %v %s", argv, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	fuseDir, mnt := filepath.Join(dir, img+".fuse"), filepath.Join(dir, img+".mnt")
	for _, d := range []string{fuseDir, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	run("rbd", "-c", conf, "create", "--size", "64", "rbd/"+img)
	fuse := exec.Command("rbd-fuse", "-c", conf, "-p", "rbd", "--image="+img, fuseDir, "-f")
	fuse.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := fuse.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = fuse.Wait(); close(exited) }()
	stopFuse := func() {
		_ = fuse.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = fuse.Process.Kill()
			<-exited
		}
		_ = syscall.Unmount(fuseDir, syscall.MNT_DETACH)
	}
	for {
		if ok, _ := mountinfo.Mounted(fuseDir); ok {
			break
		}
		select {
		case <-exited:
			b.Fatal("rbd-fuse exited before it mounted")
		case <-ctx.Done():
			stopFuse()
			b.Fatal("rbd-fuse did not mount in 2 minutes")
		case <-time.After(5 * time.Millisecond): // polling interval
		}
	}
	dev := run("losetup", "--find", "--show", filepath.Join(fuseDir, img))
	run("mkfs.ext4", "-q", "-m0", dev)
	run("mount", dev, mnt)
	run("umount", mnt)
	run("losetup", "--detach", dev)
	stopFuse()
	run("rbd", "-c", conf, "rm", "--no-progress", "rbd/"+img)
	return time.Since(t0)
}
