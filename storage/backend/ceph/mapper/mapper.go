// Package mapper makes Ceph RBD images usable as block devices on this host.
// Three mappers sit behind one small interface:
//
//   - krbd: the kernel RBD client (`rbd device map`, found through
//     /sys/bus/rbd); the production default.
//   - nbd: rbd-nbd, librbd in user space behind an NBD device (found through
//     /sys/block/nbd*/pid).
//   - fuse: rbd-fuse exposes the image as a file, which is attached to a loop
//     device; for kernels with neither rbd nor nbd (CI machines).
//
// Auto detection (Detect) prefers them in that order. Every external command
// runs through Env.Run with Env.Timeout and the caller's context, so a hung
// tool is an error, not a hang. The package does not import go-ceph: it drives
// the mapping tools, and images are named by pool and image name only.
package mapper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
)

// Mapper kinds accepted by New.
const (
	Auto = "auto"
	KRBD = "krbd"
	NBD  = "nbd"
	Fuse = "fuse"
)

// DefaultTimeout bounds each external command when Env.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// ErrUnavailable means the host lacks what a mapper needs (kernel module,
// tool, /dev/fuse).
var ErrUnavailable = errors.New("mapper unavailable on this host")

// Image names an RBD image and the client identity that maps it.
type Image struct {
	Pool string
	Name string
	// Conf, Keyring and User are passed to the mapping tool; empty means the
	// tool's default (CEPH_CONF or /etc/ceph/ceph.conf, the conf's keyring,
	// client.admin).
	Conf    string
	Keyring string
	User    string
}

// Spec is pool/name, as rbd tools take it.
func (i Image) Spec() string { return i.Pool + "/" + i.Name }

func (i Image) validate() error {
	for _, s := range []string{i.Pool, i.Name} {
		if s == "" || strings.ContainsAny(s, "/@ \t\n\x00") || s == "." || s == ".." {
			return fmt.Errorf("image %q: pool and name must be non-empty without '/', '@' or spaces", i.Spec())
		}
	}
	// rbd-fuse takes the user and keyring through CEPH_ARGS, which is split
	// on whitespace.
	if strings.ContainsAny(i.User+i.Keyring, " \t\n") {
		return fmt.Errorf("image %s: user and keyring path must not contain whitespace", i.Spec())
	}
	return nil
}

// cephArgs are the client identity flags every Ceph tool understands.
func (i Image) cephArgs() []string {
	var args []string
	if i.Conf != "" {
		args = append(args, "--conf", i.Conf)
	}
	if i.User != "" {
		args = append(args, "--id", i.User)
	}
	if i.Keyring != "" {
		args = append(args, "--keyring", i.Keyring)
	}
	return args
}

// Mapper attaches images to block devices. Implementations are safe for
// concurrent use on different images; callers serialise calls on one image.
type Mapper interface {
	// Name is the mapper kind (KRBD, NBD, Fuse).
	Name() string
	// Map maps img and returns its block device. Mapping an image that is
	// already mapped on this host returns the existing device.
	Map(ctx context.Context, img Image) (dev string, err error)
	// Unmap removes every mapping of img on this host; an image that is not
	// mapped is not an error. Whatever is mounted from it must be unmounted
	// first.
	Unmap(ctx context.Context, img Image) error
	// Device returns img's device on this host, or "" if it is not mapped.
	Device(ctx context.Context, img Image) (string, error)
	// Refresh waits until dev shows at least size bytes after the image was
	// grown.
	Refresh(ctx context.Context, img Image, dev string, size int64) error
}

// Env is the host a mapper works on. The zero value of each field means the
// real host; tests substitute a fake sysfs, /proc and tools.
type Env struct {
	// Run runs a command with a timeout; sysexec.Run when nil.
	Run func(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error)
	// LookPath finds a tool; exec.LookPath when nil.
	LookPath func(file string) (string, error)
	// SysRoot, ProcRoot and DevRoot default to /sys, /proc and /dev.
	SysRoot, ProcRoot, DevRoot string
	// Timeout bounds each command; DefaultTimeout when zero.
	Timeout time.Duration
	// RunDir holds the fuse mapper's FUSE mount points, PID and log files.
	RunDir string
	// NoLoad makes Detect change nothing on the host: a kernel module that
	// is not loaded counts if modprobe could load it (modprobe -n), as it
	// would be on first use. For checks (volcli doctor).
	NoLoad bool
}

func (e Env) withDefaults() Env {
	if e.Run == nil {
		e.Run = sysexec.Run
	}
	if e.LookPath == nil {
		e.LookPath = exec.LookPath
	}
	if e.SysRoot == "" {
		e.SysRoot = "/sys"
	}
	if e.ProcRoot == "" {
		e.ProcRoot = "/proc"
	}
	if e.DevRoot == "" {
		e.DevRoot = "/dev"
	}
	if e.Timeout == 0 {
		e.Timeout = DefaultTimeout
	}
	return e
}

func (e Env) run(ctx context.Context, argv ...string) ([]byte, error) {
	return e.Run(ctx, e.Timeout, argv...)
}

// New returns the mapper of the given kind; Auto (or "") detects one.
func New(ctx context.Context, kind string, env Env) (Mapper, error) {
	env = env.withDefaults()
	if kind == "" || kind == Auto {
		var err error
		if kind, err = Detect(ctx, env); err != nil {
			return nil, err
		}
	}
	switch kind {
	case KRBD:
		return &krbd{env: env}, nil
	case NBD:
		return &nbd{env: env}, nil
	case Fuse:
		if env.RunDir == "" || !filepath.IsAbs(env.RunDir) {
			return nil, fmt.Errorf("fuse mapper: run dir %q must be an absolute path", env.RunDir)
		}
		return newFuse(env), nil
	default:
		return nil, fmt.Errorf("unknown mapper %q (want %s, %s, %s or %s)", kind, Auto, KRBD, NBD, Fuse)
	}
}

// Detect picks krbd if the kernel has rbd (loading the module if need be)
// and the rbd tool is installed, else nbd under the same conditions with
// rbd-nbd, else fuse if /dev/fuse, rbd-fuse and losetup are there.
func Detect(ctx context.Context, env Env) (string, error) {
	env = env.withDefaults()
	var why []string
	for _, c := range []struct {
		kind, module, sysPath string
		tools                 []string
	}{
		{KRBD, "rbd", "bus/rbd", []string{"rbd"}},
		{NBD, "nbd", "module/nbd", []string{"rbd-nbd"}},
	} {
		if err := env.haveTools(c.tools...); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", c.kind, err))
			continue
		}
		if err := env.haveModule(ctx, c.module, c.sysPath); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", c.kind, err))
			continue
		}
		return c.kind, nil
	}
	if err := env.haveTools("rbd-fuse", "losetup"); err != nil {
		why = append(why, fmt.Sprintf("%s: %v", Fuse, err))
	} else if _, err := os.Stat(filepath.Join(env.DevRoot, "fuse")); err != nil {
		why = append(why, fmt.Sprintf("%s: %v", Fuse, err))
	} else {
		return Fuse, nil
	}
	return "", fmt.Errorf("no mapper works here (%s): %w", strings.Join(why, "; "), ErrUnavailable)
}

func (e Env) haveTools(tools ...string) error {
	for _, t := range tools {
		if _, err := e.LookPath(t); err != nil {
			return fmt.Errorf("no %s tool", t)
		}
	}
	return nil
}

// haveModule reports whether sysPath exists under SysRoot, loading module
// with modprobe first if it does not.
func (e Env) haveModule(ctx context.Context, module, sysPath string) error {
	p := filepath.Join(e.SysRoot, sysPath)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if e.NoLoad {
		if _, err := e.run(ctx, "modprobe", "--dry-run", "--quiet", module); err != nil {
			return fmt.Errorf("kernel has no %s module: %w", module, err)
		}
		return nil
	}
	if _, err := e.run(ctx, "modprobe", module); err != nil {
		return fmt.Errorf("kernel has no %s module: %w", module, err)
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("modprobe %s left no %s", module, p)
	}
	return nil
}

// waitFor re-checks its condition after an eighth of the time it has
// waited so far, between minPoll and maxPoll: a condition that comes true
// after d is seen by about 1.125 d (a FUSE mount appears within tens of
// milliseconds, so a fixed 50 ms tick roughly doubled that wait), and one
// that takes seconds costs a check every maxPoll.
const (
	minPoll = time.Millisecond
	maxPoll = 50 * time.Millisecond
)

// waitFor calls cond until it reports done, returns an error, or ctx or
// timeout ends. It is for conditions the kernel or a daemon makes true
// asynchronously and offers no event for (a FUSE mount appearing, a device
// size changing).
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	t := time.NewTimer(minPoll)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		t.Reset(max(minPoll, min(maxPoll, time.Since(start)/8)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// readTrim reads a small sysfs or procfs file without its trailing newline.
func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// blockSize is the size in bytes of block device dev (e.g. /dev/rbd0) as
// sysfs reports it (in 512-byte sectors).
func (e Env) blockSize(dev string) (int64, error) {
	s, err := readTrim(filepath.Join(e.SysRoot, "block", filepath.Base(dev), "size"))
	if err != nil {
		return 0, err
	}
	var sectors int64
	if _, err := fmt.Sscan(s, &sectors); err != nil {
		return 0, fmt.Errorf("size of %s: %q is not a number", dev, s)
	}
	return sectors * 512, nil
}

// waitBlockSize waits until dev is at least size bytes: krbd and rbd-nbd
// learn of a resize from the image's header watch, asynchronously.
func (e Env) waitBlockSize(ctx context.Context, dev string, size int64) error {
	return waitFor(ctx, e.Timeout, fmt.Sprintf("%s to grow to %d bytes", dev, size), func() (bool, error) {
		n, err := e.blockSize(dev)
		return n >= size, err
	})
}
