// Package nfs is the mount-only NFS backend: a volume is an NFS export named
// by the policy's "source" driver option, mounted under the mount root. It
// creates, destroys and snapshots nothing (storage.Mounter only) and takes
// no lock: NFS volumes are for unlocked, shared use, and any number of hosts
// may mount one at once.
package nfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

var _ storage.Mounter = (*Backend)(nil)

// Defaults for the zero values of Config.
const (
	DefaultTimeout = 2 * time.Minute
)

// Volume option keys (the policy's driver options).
const (
	// OptSource is the export to mount, "server:/path" (required): the
	// policy's, or the volume's own (volume option source, or the original
	// volplugin's mount).
	OptSource = config.DriverSource
	// OptMountOptions is passed to mount -o, e.g. "nfsvers=4.1,hard".
	OptMountOptions = "options"
)

// Config configures a Backend.
type Config struct {
	// MountRoot is where volumes are mounted, as <MountRoot>/<policy>/<name>;
	// config.DefaultMountPath when empty.
	MountRoot string
	// Timeout bounds each mount and umount; DefaultTimeout when zero.
	Timeout time.Duration
	// Run runs mount and umount; sysexec.Run when nil. Tests replace it:
	// the CI kernels have no NFS client.
	Run func(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error)
}

// Backend mounts NFS exports. It is safe for concurrent use.
type Backend struct {
	mountRoot string
	timeout   time.Duration
	run       func(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error)
}

// New checks cfg and returns a Backend.
func New(cfg Config) (*Backend, error) {
	if cfg.MountRoot == "" {
		cfg.MountRoot = config.DefaultMountPath
	}
	if !filepath.IsAbs(cfg.MountRoot) {
		return nil, fmt.Errorf("nfs backend: mount root %q must be an absolute path: %w", cfg.MountRoot, config.ErrInvalid)
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("nfs backend: timeout %s is negative: %w", cfg.Timeout, config.ErrInvalid)
	}
	if cfg.Run == nil {
		cfg.Run = sysexec.Run
	}
	return &Backend{mountRoot: filepath.Clean(cfg.MountRoot), timeout: cfg.Timeout, run: cfg.Run}, nil
}

func (b *Backend) path(v storage.Volume) (string, error) {
	if err := config.ValidateName("policy", v.Policy); err != nil {
		return "", err
	}
	if err := config.ValidateName("volume", v.Name); err != nil {
		return "", err
	}
	return filepath.Join(b.mountRoot, v.Policy, v.Name), nil
}

// MountPath is <MountRoot>/<policy>/<name>, or "" if v's names are invalid.
func (b *Backend) MountPath(v storage.Volume) string {
	p, err := b.path(v)
	if err != nil {
		return ""
	}
	return p
}

// MountArgv is the command Mount runs for v at path.
func MountArgv(v storage.Volume, path string) ([]string, error) {
	src := v.Options[OptSource]
	if err := config.CheckNFSSource(src); err != nil {
		return nil, fmt.Errorf("option %s: %w", OptSource, err)
	}
	// nosuid and nodev come last, so a policy's own options cannot undo them.
	opts := fsutil.MountOptions("nfs", v.NoExec)
	if o := v.Options[OptMountOptions]; o != "" {
		if strings.ContainsAny(o, " \t\n\x00") {
			return nil, fmt.Errorf("option %s=%q has whitespace: %w", OptMountOptions, o, config.ErrInvalid)
		}
		opts = o + "," + opts
	}
	return []string{"mount", "-t", "nfs", "-o", opts, src, path}, nil
}

// Mount mounts v's export at MountPath(v); a mounted volume returns the
// existing mount.
func (b *Backend) Mount(ctx context.Context, v storage.Volume) (storage.Mount, error) {
	path, err := b.path(v)
	if err != nil {
		return storage.Mount{}, fmt.Errorf("mount: %w", err)
	}
	argv, err := MountArgv(v, path)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	if m, err := fsutil.MountAt(path); err != nil || m != nil {
		if err != nil {
			return storage.Mount{}, volErr("mount", v, err)
		}
		return storage.Mount{Volume: id(v), Device: m.Source, Path: path}, nil
	}
	created, err := fsutil.MkdirMount(b.mountRoot, path)
	if err != nil {
		if created != "" {
			_ = fsutil.RemoveDirs(path, created)
		}
		return storage.Mount{}, volErr("mount", v, err)
	}
	if _, err := b.run(ctx, b.timeout, argv...); err != nil {
		if created != "" {
			_ = fsutil.RemoveDirs(path, created)
		}
		return storage.Mount{}, volErr("mount", v, err)
	}
	return storage.Mount{Volume: id(v), Device: v.Options[OptSource], Path: path}, nil
}

// Unmount unmounts v; a volume that is not mounted is not an error.
func (b *Backend) Unmount(ctx context.Context, v storage.Volume) error {
	path, err := b.path(v)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	if err := fsutil.UnmountAt(ctx, b.timeout, v.MountedAt, path); err != nil {
		return volErr("unmount", v, err)
	}
	// Bounded: someone may have stacked mounts, but never loop forever.
	for range 8 {
		m, err := fsutil.MountAt(path)
		if err != nil {
			return volErr("unmount", v, err)
		}
		if m == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
				return volErr("unmount", v, err)
			}
			_ = os.Remove(filepath.Dir(path)) // the policy dir, if now empty
			return nil
		}
		if _, err := b.run(ctx, b.timeout, "umount", path); err != nil {
			return volErr("unmount", v, err)
		}
	}
	return volErr("unmount", v, fmt.Errorf("%s is still mounted: %w", path, storage.ErrInUse))
}

// Mounted lists the volumes mounted under the mount root, sorted.
func (b *Backend) Mounted(ctx context.Context) ([]storage.Mount, error) {
	ms, err := fsutil.MountsUnder(b.mountRoot)
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	return ms, nil
}

func volErr(op string, v storage.Volume, err error) error {
	return fmt.Errorf("%s %s/%s: %w", op, v.Policy, v.Name, err)
}

func id(v storage.Volume) storage.ID { return storage.ID{Policy: v.Policy, Name: v.Name} }
