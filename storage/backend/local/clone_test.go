package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/volplugin/volplugin/storage"
)

// dataDirOn returns a directory on a new filesystem made by mkfs argv on a loop device (xfs with reflink for copy-on-write clones,
// ext4 for none), unmounted and detached when the test ends.
func dataDirOn(tb testing.TB, size int64, mkfs ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
		tb.Fatalf("%v: %v\n%s", mkfs, err, out)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		tb.Fatalf("mount %s: %v\n%s", img, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", "-d", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// backendOn is newBackend with its data directory on data.
func backendOn(tb testing.TB, data string) *Backend {
	tb.Helper()
	mnt := tb.TempDir()
	b, err := New(Config{DataDir: data, MountRoot: mnt, Timeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cleanupHost(tb, data, mnt) })
	return b
}

// debugfsCat reads a file out of an unmounted ext4 image.
func debugfsCat(t *testing.T, image, path string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s in %s: %v", path, image, err)
	}
	return out
}

// A snapshot of a mounted volume whose data directory can clone files
// (xfs with reflink) is a copy-on-write clone: the freeze holds writers only
// for the clone, not for a copy of the data. On a data directory without
// clones (ext4) it is a copy, and the snapshot says so and for how long it
// froze. Both hold the data as it was at the snapshot.
func TestSnapshotClonesWhereTheDataDirCan(t *testing.T) {
	needRoot(t, "fsfreeze", "mkfs.xfs", "debugfs")
	for _, c := range []struct {
		name   string
		mkfs   []string
		method string
	}{
		{"xfs-reflink", []string{"mkfs.xfs", "-q", "-m", "reflink=1"}, storage.SnapshotReflink},
		{"ext4", []string{"mkfs.ext4", "-q", "-F"}, storage.SnapshotCopy},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			b := backendOn(t, dataDirOn(t, 512*mib, c.mkfs...))
			v := ext4Vol("vol", 64*mib)
			mustCreate(t, b, v)
			m := mustMount(t, b, v)
			before, after := randBytes(t, 8*mib), randBytes(t, 8*mib)
			writeSync(t, filepath.Join(m.Path, "data"), before)
			info, err := b.CreateSnapshot(ctx, v, "s1")
			if err != nil {
				t.Fatal(err)
			}
			if info.Method != c.method || info.Frozen <= 0 {
				t.Errorf("snapshot of a mounted volume = %+v, want method %s and a freeze", info, c.method)
			}
			t.Logf("%s: method %s, frozen %v", c.name, info.Method, info.Frozen)
			writeSync(t, filepath.Join(m.Path, "data"), after)
			p, _ := b.paths(v.Policy, v.Name)
			sp, _ := b.snapPath(p, "s1")
			if got := debugfsCat(t, sp, "/data"); !bytes.Equal(got, before) {
				t.Errorf("snapshot holds %d bytes unlike what was written before it", len(got))
			}
			// Unmounted, nothing is frozen.
			if err := b.Unmount(ctx, v); err != nil {
				t.Fatal(err)
			}
			info, err = b.CreateSnapshot(ctx, v, "s2")
			if err != nil || info.Frozen != 0 || info.Method != c.method {
				t.Errorf("snapshot of an unmounted volume = %+v, %v; want %s, no freeze", info, err, c.method)
			}
			if got := debugfsCat(t, sp, "/data"); !bytes.Equal(got, before) {
				t.Error("the first snapshot changed when the volume was written after it")
			}
			if got := debugfsCat(t, filepath.Join(filepath.Dir(sp), "s2"+imageExt), "/data"); !bytes.Equal(got, after) {
				t.Error("the second snapshot lacks the data written before it")
			}
		})
	}
}

// BenchmarkSnapshotFreeze reports how long a mounted 1 GiB local volume
// with 500 MiB of data (64 MiB with 16 MiB under -short) is frozen for a
// snapshot, with the data directory on xfs (reflink clone) and on ext4 (data
// copy): frozen-ms/op.
//
//	go test -tags pacific -run '^$' -bench SnapshotFreeze -benchtime 5x ./storage/backend/local/
func BenchmarkSnapshotFreeze(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for loop devices and mount")
	}
	for _, c := range []struct {
		name string
		mkfs []string
	}{
		{"xfs-reflink", []string{"mkfs.xfs", "-q", "-m", "reflink=1"}},
		{"ext4-copy", []string{"mkfs.ext4", "-q", "-F"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			size, data := int64(1<<30), 500
			if testing.Short() {
				size, data = 64*mib, 16
			}
			// Room for the image and one full copy per snapshot.
			be := backendOn(b, dataDirOn(b, size+int64(b.N+1)*int64(data)*mib+(256*mib), c.mkfs...))
			v := ext4Vol("vol", size)
			if err := be.Create(ctx, v); err != nil {
				b.Fatal(err)
			}
			m, err := be.Mount(ctx, v)
			if err != nil {
				b.Fatal(err)
			}
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
			b.ReportMetric(float64(frozen.Milliseconds())/float64(b.N), "frozen-ms/op")
		})
	}
}
