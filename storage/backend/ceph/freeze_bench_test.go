//go:build cgo && pacific

package ceph

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ceph/go-ceph/rados"
)

// BenchmarkSnapshotFreezeCeph reports how long a mounted 1 GiB Ceph volume
// with 500 MiB of data (64 MiB with 16 MiB under -short) is frozen for a
// snapshot (an RBD snapshot, which is copy-on-write whatever the data):
// frozen-ms/op. The fuse mapper (rbd-fuse + loop device) is the one these
// machines have.
//
// librbd suspends the image's writes while the monitors allocate the
// snapshot's id, and the monitors batch proposals: one waits for
// paxos_propose_interval (1 s by default) after the previous commit, or
// paxos_min_wait (50 ms) after a quiet interval. So the freeze is set by
// those two settings, not by the data or the client, and the benchmark
// runs under the defaults and under a short interval, in the same run,
// restoring the monitors' settings afterwards. Snapshots follow each other
// here, the worst case for the defaults.
//
//	go test -tags pacific -run '^$' -bench SnapshotFreezeCeph -benchtime 5x ./storage/backend/ceph/
func BenchmarkSnapshotFreezeCeph(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	be := newBackend(b, "bench-host")
	policy := testPolicy(b)
	removeImagesOnCleanup(b, policy, be)
	size, data := int64(1<<30), 500
	if testing.Short() {
		size, data = 64*mib, 16
	}
	v := testVol(policy, "vol", size, "ext4")
	if err := be.Create(ctx, v); err != nil {
		b.Fatal(err)
	}
	m, err := be.Mount(ctx, v)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Unmount(context.Background(), v) })
	out, err := exec.Command("dd", "if=/dev/urandom", "of="+filepath.Join(m.Path, "data"), "bs=1M", "count="+strconv.Itoa(data), "conv=fsync").CombinedOutput()
	if err != nil {
		b.Fatalf("dd: %v\n%s", err, out)
	}
	conn := adminConn(b)
	taken := 0
	for _, tc := range []struct {
		name     string
		settings map[string]string
	}{
		{"monitors-default", nil},
		{"monitors-propose-20ms", map[string]string{"paxos_propose_interval": "0.02", "paxos_min_wait": "0.005"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			setMonConfig(b, conn, tc.settings)
			var frozen float64
			for range b.N {
				taken++
				info, err := be.CreateSnapshot(ctx, v, fmt.Sprintf("s%d", taken))
				if err != nil {
					b.Fatal(err)
				}
				frozen += float64(info.Frozen.Microseconds()) / 1000
			}
			b.ReportMetric(frozen/float64(b.N), "frozen-ms/op")
		})
	}
}

// setMonConfig sets the monitors' options in settings for the rest of the
// benchmark and puts back what the cluster's central config had for them
// when it ends; none of them may be set there beforehand, so a cluster
// whose operator chose them is never changed.
func setMonConfig(b *testing.B, conn *rados.Conn, settings map[string]string) {
	b.Helper()
	if len(settings) == 0 {
		return
	}
	var dump []struct {
		Section string `json:"section"`
		Name    string `json:"name"`
	}
	if err := monJSON(conn, map[string]any{"prefix": "config dump", "format": "json"}, &dump); err != nil {
		b.Fatal(err)
	}
	for _, e := range dump {
		if _, ok := settings[e.Name]; ok && e.Section == "mon" {
			b.Skipf("the cluster's config already sets mon %s; not changing it", e.Name)
		}
	}
	mon := func(cmd map[string]any) error {
		j, err := json.Marshal(cmd)
		if err != nil {
			return err
		}
		if _, status, err := conn.MonCommand(j); err != nil {
			return fmt.Errorf("%s: %w (%s)", cmd["prefix"], err, status)
		}
		return nil
	}
	for name, value := range settings {
		b.Cleanup(func() {
			if err := mon(map[string]any{"prefix": "config rm", "who": "mon", "name": name}); err != nil {
				b.Errorf("restore mon %s: %v", name, err)
			}
		})
		if err := mon(map[string]any{"prefix": "config set", "who": "mon", "name": name, "value": value}); err != nil {
			b.Fatal(err)
		}
	}
}
