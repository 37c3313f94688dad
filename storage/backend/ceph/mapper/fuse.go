package mapper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// fuse maps an image by running one rbd-fuse per image, which shows the
// image as the file <RunDir>/fuse/<pool>/<image>/<image>, and attaching that
// file to a loop device. rbd-fuse's PID is kept in <RunDir>/fuse/<pool>/<image>.pid
// and its output in <image>.log beside it.
//
// Tear-down runs in the only safe order: loop device, then rbd-fuse (by its
// PID: SIGTERM, then SIGKILL), then whatever FUSE mount it left. The
// filesystem on the loop device must be unmounted first; with the cluster
// gone (or this client blocklisted) that unmount can block in the kernel
// until rbd-fuse is killed.
type fuse struct {
	env  Env
	root string // <RunDir>/fuse with symlinks resolved, as the kernel reports paths

	mu    sync.Mutex
	procs map[string]*fuseProc // rbd-fuse processes started here, by mount dir
}

// fuseProc is an rbd-fuse this mapper started; done closes when it exits.
type fuseProc struct {
	pid  int
	done chan struct{}
}

// fuseStopTimeout bounds how long rbd-fuse may take to exit after SIGTERM
// (it unmounts, closes the image and its cluster connection) before it is
// killed. Short, because a fenced rbd-fuse never exits by itself and blocks
// everything on the host that touches its file meanwhile.
const fuseStopTimeout = 10 * time.Second

// fuseCephArgs returns what goes to rbd-fuse through CEPH_ARGS. rbd-fuse ignores the result
// of rbd_flush in fsync, so with librbd's write-back cache a write the
// cluster refuses (after this client was blocklisted, say) would be
// acknowledged and lost; without the cache every write's error reaches the
// loop device and the filesystem. The mount timeout keeps a dead cluster
// from stalling rbd-fuse's start for 300 s.
func fuseCephArgs(img Image) []string {
	args := []string{"--rbd_cache=false", "--client_mount_timeout=30"}
	if img.User != "" {
		args = append(args, "--id", img.User)
	}
	if img.Keyring != "" {
		args = append(args, "--keyring", img.Keyring)
	}
	return args
}

func newFuse(env Env) *fuse {
	root := filepath.Join(env.RunDir, "fuse")
	if r, err := filepath.EvalSymlinks(env.RunDir); err == nil {
		root = filepath.Join(r, "fuse")
	}
	return &fuse{env: env, root: root, procs: map[string]*fuseProc{}}
}

func (*fuse) Name() string { return Fuse }

// paths of img: the FUSE mount point, the image file in it, the PID file.
func (f *fuse) paths(img Image) (dir, file, pidFile string) {
	dir = filepath.Join(f.root, img.Pool, img.Name)
	return dir, filepath.Join(dir, img.Name), dir + ".pid"
}

func (f *fuse) Map(ctx context.Context, img Image) (dev string, err error) {
	if err := img.validate(); err != nil {
		return "", err
	}
	if dev, err := f.Device(ctx, img); err != nil || dev != "" {
		return dev, err
	}
	dir, file, _ := f.paths(img)
	mounted, err := isMountPoint(dir)
	if err != nil {
		return "", err
	}
	if !mounted {
		if err := f.start(ctx, img); err != nil {
			return "", err
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, f.stop(context.WithoutCancel(ctx), img))
			}
		}()
	}
	// rbd-fuse shows an image that does not exist as an empty directory, so
	// the file's absence is the only sign; the caller checks existence first.
	if err := waitFor(ctx, f.env.Timeout, "rbd-fuse to show "+file, func() (bool, error) {
		_, err := statFUSE(ctx, file)
		return err == nil, nil
	}); err != nil {
		return "", fmt.Errorf("fuse map %s: %w", img.Spec(), err)
	}
	out, err := f.env.run(ctx, "losetup", "--find", "--show", file)
	if err != nil {
		return "", fmt.Errorf("fuse map %s: attach loop device: %w", img.Spec(), err)
	}
	dev = strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("fuse map %s: losetup printed %q, not a device", img.Spec(), dev)
	}
	return dev, nil
}

// start runs rbd-fuse for img and waits until its FUSE mount is up.
func (f *fuse) start(ctx context.Context, img Image) error {
	dir, _, pidFile := f.paths(img)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fuse map %s: %w", img.Spec(), err)
	}
	logPath := strings.TrimSuffix(pidFile, ".pid") + ".log"
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("fuse map %s: %w", img.Spec(), err)
	}
	defer logFile.Close()

	argv := []string{"-p", img.Pool, "--image=" + img.Name, dir, "-f"}
	if img.Conf != "" {
		argv = append([]string{"-c", img.Conf}, argv...)
	}
	// Not sysexec.Run: rbd-fuse runs for as long as the image is mapped. Its
	// own session keeps it alive across a restart of this daemon and out of
	// reach of signals sent to our process group.
	cmd := exec.Command("rbd-fuse", argv...)
	cmd.Env = append(os.Environ(), "CEPH_ARGS="+strings.Join(fuseCephArgs(img), " "), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fuse map %s: start rbd-fuse: %w", img.Spec(), err)
	}
	p := &fuseProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // reap it; its exit is seen through done
		close(p.done)
	}()
	f.mu.Lock()
	f.procs[dir] = p
	f.mu.Unlock()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(p.pid)+"\n"), 0o600); err != nil {
		return errors.Join(fmt.Errorf("fuse map %s: %w", img.Spec(), err), f.stop(context.WithoutCancel(ctx), img))
	}
	err = waitFor(ctx, f.env.Timeout, "rbd-fuse to mount "+dir, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("rbd-fuse exited (see %s)", logPath)
		default:
		}
		return isMountPoint(dir)
	})
	if err != nil {
		return errors.Join(fmt.Errorf("fuse map %s: %w", img.Spec(), err), f.stop(context.WithoutCancel(ctx), img))
	}
	return nil
}

func (f *fuse) Unmap(ctx context.Context, img Image) error {
	if err := img.validate(); err != nil {
		return err
	}
	_, file, _ := f.paths(img)
	devs, err := f.loops(file)
	if err != nil {
		return err
	}
	for _, dev := range devs {
		if _, err := f.env.run(ctx, "losetup", "--detach", dev); err != nil {
			return fmt.Errorf("fuse unmap %s: detach %s: %w", img.Spec(), dev, err)
		}
	}
	// The filesystem is unmounted, so everything written reached the
	// cluster (rbd-fuse writes through), and rbd-fuse can go now. It goes
	// before waiting for the loop devices: a detach is deferred while
	// anything has the device open, and whatever has it open may be stuck
	// on a fenced rbd-fuse (losetup --list, run anywhere on the host, stats
	// every backing file).
	dir, _, pidFile := f.paths(img)
	if err := f.terminate(ctx, dir, pidFile); err != nil {
		return fmt.Errorf("fuse unmap %s: %w", img.Spec(), err)
	}
	if err := waitFor(ctx, f.env.Timeout, "loop devices of "+file+" to detach", func() (bool, error) {
		devs, err := f.loops(file)
		return len(devs) == 0, err
	}); err != nil {
		return fmt.Errorf("fuse unmap %s: %w", img.Spec(), err)
	}
	return f.stop(ctx, img)
}

// stop ends img's rbd-fuse and removes its FUSE mount, mount point and PID
// file. The daemon is stopped first (SIGTERM: it unmounts itself and closes
// the image) and only then is a mount it left behind removed: a fenced
// (blocklisted) rbd-fuse spins on every request it gets, so anything that
// touches its mount point while it runs - umount(8) stats it - blocks in the
// kernel. Once the daemon is gone, the mount is dead and unmounting it
// cannot block.
func (f *fuse) stop(ctx context.Context, img Image) error {
	dir, _, pidFile := f.paths(img)
	if err := f.terminate(ctx, dir, pidFile); err != nil {
		return fmt.Errorf("fuse unmap %s: %w", img.Spec(), err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		// The syscall, not umount(8): no path canonicalisation that would
		// stat the mount point. Lazy, because a dead FUSE mount serves
		// nothing that a later user could wait for.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("fuse unmap %s: unmount %s: %w", img.Spec(), dir, err)
		}
	}
	for _, p := range []string{pidFile, strings.TrimSuffix(pidFile, ".pid") + ".log", dir} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("fuse unmap %s: %w", img.Spec(), err)
		}
	}
	_ = os.Remove(filepath.Dir(dir)) // the pool dir, if now empty
	return nil
}

// terminate stops the rbd-fuse serving dir: SIGTERM, then SIGKILL if it has
// not exited within fuseStopTimeout. A process started before a restart of
// this daemon is known only by its PID file, and is signalled only while its
// command line still names dir (PIDs are reused).
func (f *fuse) terminate(ctx context.Context, dir, pidFile string) error {
	f.mu.Lock()
	p := f.procs[dir]
	delete(f.procs, dir)
	f.mu.Unlock()
	if p == nil {
		pid, err := f.recordedPID(pidFile, dir)
		if err != nil || pid == 0 {
			return err
		}
		p = &fuseProc{pid: pid}
	}
	exited := func() (bool, error) {
		if p.done != nil {
			select {
			case <-p.done:
				return true, nil
			default:
				return false, nil
			}
		}
		pid, err := f.recordedPID(pidFile, dir)
		return pid == 0, err
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if done, err := exited(); err != nil || done {
			return err
		}
		if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal rbd-fuse %d: %w", p.pid, err)
		}
		// A SIGKILL is waited for even if ctx is done: the process must go.
		wctx := ctx
		if sig == syscall.SIGKILL {
			wctx = context.WithoutCancel(ctx)
		}
		if err := p.wait(wctx, fmt.Sprintf("rbd-fuse %d to exit after %s", p.pid, sig), exited); err == nil {
			return nil
		} else if sig == syscall.SIGKILL {
			return err
		}
	}
	return nil
}

// wait waits up to fuseStopTimeout for p to exit: on done when p was
// started here (its exit is an event), else by polling exited.
func (p *fuseProc) wait(ctx context.Context, what string, exited func() (bool, error)) error {
	if p.done == nil {
		return waitFor(ctx, fuseStopTimeout, what, exited)
	}
	ctx, cancel := context.WithTimeout(ctx, fuseStopTimeout)
	defer cancel()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
}

// recordedPID returns the PID in pidFile if that process is alive and is the
// rbd-fuse serving dir, else 0.
func (f *fuse) recordedPID(pidFile, dir string) (int, error) {
	s, err := readTrim(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q", pidFile, s)
	}
	raw, err := os.ReadFile(filepath.Join(f.env.ProcRoot, s, "cmdline"))
	if err != nil {
		return 0, nil // gone
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if len(argv) == 0 || filepath.Base(argv[0]) != "rbd-fuse" || !strings.Contains(string(raw), dir) {
		return 0, nil // a zombie has an empty command line; another process is not ours
	}
	return pid, nil
}

func (f *fuse) Device(_ context.Context, img Image) (string, error) {
	if err := img.validate(); err != nil {
		return "", err
	}
	_, file, _ := f.paths(img)
	devs, err := f.loops(file)
	if err != nil || len(devs) == 0 {
		return "", err
	}
	return devs[0], nil
}

// loops lists the loop devices backed by file, from sysfs: unlike losetup it
// does not touch the file, which hangs or fails if rbd-fuse is dead.
func (f *fuse) loops(file string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(f.env.SysRoot, "block", "loop*", "loop", "backing_file"))
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, m := range matches {
		b, err := readTrim(m)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(b, " (deleted)") == file {
			devs = append(devs, filepath.Join(f.env.DevRoot, filepath.Base(filepath.Dir(filepath.Dir(m)))))
		}
	}
	return devs, nil
}

// Refresh waits for the FUSE file to show the new size (the kernel caches
// its attributes for a second, and rbd-fuse learns of the resize from the
// header watch) and then makes the loop device re-read it.
func (f *fuse) Refresh(ctx context.Context, img Image, dev string, size int64) error {
	_, file, _ := f.paths(img)
	if err := waitFor(ctx, f.env.Timeout, file+" to grow", func() (bool, error) {
		fi, err := statFUSE(ctx, file)
		return err == nil && fi.Size() >= size, err
	}); err != nil {
		return fmt.Errorf("fuse refresh %s: %w", img.Spec(), err)
	}
	if _, err := f.env.run(ctx, "losetup", "--set-capacity", dev); err != nil {
		return fmt.Errorf("fuse refresh %s: %w", img.Spec(), err)
	}
	return f.env.waitBlockSize(ctx, dev, size)
}

// fuseStatTimeout bounds one stat of a file in a FUSE mount.
const fuseStatTimeout = 10 * time.Second

// statFUSE stats a file in a FUSE mount without hanging with rbd-fuse: a
// daemon that stopped answering (fenced, or its cluster gone) blocks the
// stat in the kernel. The stat runs in its own goroutine, which stays blocked
// until the daemon answers or dies.
func statFUSE(ctx context.Context, path string) (os.FileInfo, error) {
	type result struct {
		fi  os.FileInfo
		err error
	}
	ch := make(chan result, 1)
	go func() {
		fi, err := os.Stat(path)
		ch <- result{fi, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, fuseStatTimeout)
	defer cancel()
	select {
	case r := <-ch:
		return r.fi, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("stat %s: rbd-fuse does not answer: %w", path, ctx.Err())
	}
}

// isMountPoint reports whether something is mounted on dir.
func isMountPoint(dir string) (bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return false, err
	}
	return len(infos) > 0, nil
}
