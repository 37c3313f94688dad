//go:build cgo && pacific

package ceph

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSnapshotFreezeCeph reports how long a mounted 1 GiB Ceph volume
// with 500 MiB of data (64 MiB with 16 MiB under -short) is frozen for a
// snapshot (an RBD snapshot, which is copy-on-write whatever the data):
// frozen-ms/op. The fuse mapper (rbd-fuse + loop device) is the one these
// machines have.
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
	var frozen time.Duration
	b.ResetTimer()
	for i := range b.N {
		info, err := be.CreateSnapshot(ctx, v, fmt.Sprintf("s%d", i))
		if err != nil {
			b.Fatal(err)
		}
		frozen += info.Frozen
	}
	b.StopTimer()
	b.ReportMetric(float64(frozen.Microseconds())/1000/float64(b.N), "frozen-ms/op")
}
