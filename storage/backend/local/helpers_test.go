package local

import (
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

const mib = 1 << 20

// needRoot skips tests that attach loop devices and mount.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mount")
	}
	for _, tool := range append([]string{"losetup", "blkid", "mount", "umount", "mkfs.ext4"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// newBackend returns a Backend on temporary directories and makes sure that,
// whatever the test does, nothing stays mounted or attached afterwards.
func newBackend(t *testing.T) *Backend {
	t.Helper()
	data, mnt := t.TempDir(), t.TempDir()
	b, err := New(Config{DataDir: data, MountRoot: mnt, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupHost(t, data, mnt) })
	return b
}

func cleanupHost(t testing.TB, data, mnt string) {
	ctx := context.Background()
	mounts := mountsUnder(t, mnt)
	// Deepest first, in case a test stacked mounts.
	slices.Reverse(mounts)
	for _, m := range mounts {
		if _, err := sysexec.Run(ctx, time.Minute, "umount", m); err != nil {
			t.Errorf("cleanup: %v", err)
			_, _ = sysexec.Run(ctx, time.Minute, "umount", "-l", m)
		}
	}
	_ = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(path, imageExt) {
			return nil
		}
		for _, dev := range loopsBacking(t, path) {
			if _, err := sysexec.Run(ctx, time.Minute, "losetup", "-d", dev); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		return nil
	})
}

// mountsUnder lists the mount points under root.
func mountsUnder(t testing.TB, root string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		out = append(out, in.Mountpoint)
	}
	return out
}

// loopsBacking finds loop devices backed by path through sysfs, which still
// works once the file is deleted.
func loopsBacking(t testing.TB, path string) []string {
	t.Helper()
	real := path
	if r, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		real = filepath.Join(r, filepath.Base(path))
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // detached meanwhile
		}
		backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if backing == path || backing == real {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return devs
}

// assertClean checks that v is neither mounted nor attached.
func assertClean(t *testing.T, b *Backend, v storage.Volume) {
	t.Helper()
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		t.Fatal(err)
	}
	if devs := loopsBacking(t, p.image); len(devs) > 0 {
		t.Errorf("loop devices still back %s: %v", p.image, devs)
	}
	if ms := mountsUnder(t, b.mountRoot); len(ms) > 0 {
		t.Errorf("still mounted under %s: %v", b.mountRoot, ms)
	}
	if _, err := os.Lstat(p.mount); !os.IsNotExist(err) {
		t.Errorf("mount dir %s: want it gone, stat err %v", p.mount, err)
	}
}

func ext4Vol(name string, size int64) storage.Volume {
	return storage.Volume{
		Policy:     "pol",
		Name:       name,
		Size:       size,
		Filesystem: "ext4",
		Mkfs:       []string{"mkfs.ext4", "-q", "-m0", "%"},
	}
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeSync writes data to path and fsyncs it.
func writeSync(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, b *Backend, v storage.Volume) {
	t.Helper()
	if err := b.Create(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}

func mustMount(t *testing.T, b *Backend, v storage.Volume) storage.Mount {
	t.Helper()
	m, err := b.Mount(context.Background(), v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustUnmount(t *testing.T, b *Backend, v storage.Volume) {
	t.Helper()
	if err := b.Unmount(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}

// fsSize is the size of the filesystem mounted at path.
func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// allocated is the disk space path really uses.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// errOf is the error of a call that also returns a value.
func errOf[T any](_ T, err error) error { return err }
