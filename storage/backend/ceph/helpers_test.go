//go:build cgo && pacific

package ceph

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

const mib = 1 << 20

// cephConf is the test cluster's conf. Without one the test is skipped, or
// fails under CI, where `make test` must have started the cluster.
func cephConf(t testing.TB) string {
	t.Helper()
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		const why = "CEPH_CONF unset: make test starts the cluster with scripts/ceph-dev"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	return conf
}

// needRoot skips tests that attach loop devices and mount.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE, loop devices and mount")
	}
	for _, tool := range []string{"rbd-fuse", "losetup", "blkid", "mount", "umount", "mkfs.ext4", "mkfs.xfs", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// testPolicy is a policy name no other test run uses, so that runs sharing
// the cluster do not see each other's images.
func testPolicy(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// newBackend returns a fuse-mapper Backend on temporary directories for
// host; cleanup tears down, whatever the test did, its mounts, loop devices
// and rbd-fuse processes, in that order.
func newBackend(t testing.TB, host string, mod ...func(*Config)) *Backend {
	t.Helper()
	cfg := Config{
		Conf:      cephConf(t),
		Host:      host,
		MountRoot: t.TempDir(),
		RunDir:    t.TempDir(),
		Mapper:    "fuse",
		Timeout:   time.Minute,
		OpTimeout: 20 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cleanupHost(t, b.cfg)
		_ = b.Close()
	})
	return b
}

func cleanupHost(t testing.TB, cfg Config) {
	ctx := context.Background()
	// Any rbd-fuse still running is a leak; it goes first, because a fenced
	// one never answers and would hang every unmount below.
	pids, _ := filepath.Glob(filepath.Join(cfg.RunDir, "fuse", "*", "*.pid"))
	for _, p := range pids {
		if pid := rbdFusePID(p); pid > 0 {
			t.Errorf("cleanup: rbd-fuse %d still runs; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if real, err := filepath.EvalSymlinks(cfg.MountRoot); err == nil {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
		slices.Reverse(infos) // deepest, latest first
		for _, in := range infos {
			t.Errorf("cleanup: %s still mounted", in.Mountpoint)
			if _, err := sysexec.Run(ctx, time.Minute, "umount", "--lazy", in.Mountpoint); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	fuseRoot := filepath.Join(cfg.RunDir, "fuse")
	detachLoops(t, fuseRoot)
	if real, err := filepath.EvalSymlinks(fuseRoot); err == nil {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
		for _, in := range infos {
			t.Errorf("cleanup: FUSE mount %s left", in.Mountpoint)
			_ = unix.Unmount(in.Mountpoint, unix.MNT_DETACH)
		}
	}
}

// detachLoops detaches the loop devices backed by files under dir.
func detachLoops(t testing.TB, dir string) {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		t.Errorf("cleanup: loop device %s left", dev)
		if _, err := sysexec.Run(context.Background(), time.Minute, "losetup", "--detach", dev); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// rbdFusePID is the live rbd-fuse recorded in pidFile, or 0.
func rbdFusePID(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.HasPrefix(string(cmd), "rbd-fuse\x00") {
		return 0
	}
	return pid
}

// adminConn is a client.admin connection for checks behind the backend's back.
func adminConn(t testing.TB) *rados.Conn {
	t.Helper()
	conn, err := rados.NewConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(cephConf(t)); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"client_mount_timeout": "20", "rados_mon_op_timeout": "20", "rados_osd_op_timeout": "20"} {
		if err := conn.SetConfigOption(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Shutdown)
	return conn
}

// policyImages lists the images of policy in pool rbd, straight from Ceph.
func policyImages(t testing.TB, conn *rados.Conn, policy string) []string {
	t.Helper()
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	names, err := rbd.GetImageNames(io)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, policy+ImageSeparator) {
			out = append(out, n)
		}
	}
	return out
}

// removeImagesOnCleanup removes whatever images of policy a failed test left
// (unmounting them on every host first; clones go before their parents on a
// later pass), so that the shared pool does not fill up.
func removeImagesOnCleanup(t testing.TB, policy string, hosts ...*Backend) {
	conn := adminConn(t)
	b := hosts[0]
	t.Cleanup(func() {
		ctx := context.Background()
		for range 3 {
			names := policyImages(t, conn, policy)
			if len(names) == 0 {
				return
			}
			for _, n := range names {
				id, _ := ParseImageName(n)
				v := storage.Volume{Policy: id.Policy, Name: id.Name}
				for _, h := range hosts {
					if err := h.Unmount(ctx, v); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
				if err := b.Destroy(ctx, v); err != nil {
					_ = b.BreakLock(ctx, v, "test cleanup")
					_ = b.Destroy(ctx, v)
				}
			}
		}
		if left := policyImages(t, conn, policy); len(left) > 0 {
			t.Errorf("cleanup: images left in pool rbd: %v", left)
		}
	})
}

func testVol(policy, name string, size int64, fs string) storage.Volume {
	mkfs := map[string][]string{"ext4": {"mkfs.ext4", "-q", "-m0", "%"}, "xfs": {"mkfs.xfs", "-q", "%"}}[fs]
	return storage.Volume{Policy: policy, Name: name, Size: size, Pool: "rbd", Filesystem: fs, Mkfs: mkfs}
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
func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// watchers lists the clients that have the image open, straight from Ceph.
func watchers(t *testing.T, conn *rados.Conn, image string) []rbd.ImageWatcher {
	t.Helper()
	io, err := conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	img, err := rbd.OpenImageReadOnly(io, image, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	ws, err := img.ListWatchers()
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// createUser makes a Ceph user with the rbd profile and returns its name
// (without "client.") and a keyring file holding its key.
func createUser(t *testing.T, conn *rados.Conn, name string) (user, keyring string) {
	t.Helper()
	cmd, _ := json.Marshal(map[string]any{
		"prefix": "auth get-or-create", "entity": "client." + name, "format": "plain",
		"caps": []string{"mon", "profile rbd", "osd", "profile rbd pool=rbd"},
	})
	out, status, err := conn.MonCommand(cmd)
	if err != nil {
		t.Fatalf("create user %s: %v (%s)", name, err, status)
	}
	t.Cleanup(func() {
		del, _ := json.Marshal(map[string]any{"prefix": "auth del", "entity": "client." + name})
		_, _, _ = conn.MonCommand(del)
	})
	keyring = filepath.Join(t.TempDir(), name+".keyring")
	if err := os.WriteFile(keyring, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, keyring
}

// errOf is the error of a call that also returns a value.
func errOf[T any](_ T, err error) error { return err }
