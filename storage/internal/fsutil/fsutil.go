// Package fsutil holds the host-side filesystem steps that every backend
// mounting a block device or export repeats: creating and rolling back mount
// points, reading /proc/self/mountinfo, probing a device with blkid and
// formatting it only if blank, mount/umount, and the whole sequences a block
// backend runs around its own attach and detach (MountDevice,
// UnmountDevice). The local, Ceph and NFS backends share it so that they
// behave (and fail) alike. Tools run through internal/sysexec and
// mount/umount are system calls; each is bounded by the caller's timeout.
package fsutil

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// MkdirMount creates the mount point path under the mount root root and
// returns the topmost directory it created ("" if none), so that a rollback
// (RemoveDirs) removes exactly those. The root and every directory from it
// to path's parent are made 0700 (PrivateDir): a volume's files are its
// containers' business, and no other host user may reach them through the
// mount root (dockerd, as root, binds the mount point itself into
// containers).
func MkdirMount(root, path string) (created string, err error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("mount point %s is not under the mount root %s", path, root)
	}
	for d := path; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		created = d
		if filepath.Dir(d) == d {
			break
		}
	}
	root = filepath.Clean(root)
	for d := filepath.Dir(path); d != root; d = filepath.Dir(d) {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return created, err
		}
		if err := PrivateDir(d); err != nil {
			return created, err
		}
	}
	// The root may be a symlink the operator made; what it names is
	// made private.
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	if err := PrivateDir(root); err != nil {
		return created, err
	}
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return created, err
	}
	// mount(8) follows the mount point; it must be a real directory, not a
	// symlink planted to redirect the mount.
	fi, err := os.Lstat(path)
	if err != nil {
		return created, err
	}
	if !fi.IsDir() {
		return created, fmt.Errorf("mount point %s is not a directory", path)
	}
	return created, nil
}

// PrivateDir makes path a directory only its owner (root) can enter: created
// 0700 if missing, its group and other bits cleared if it exists. A symlink
// is refused, since mounts below it would land where it points.
func PrivateDir(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink?)", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return os.Chmod(path, fi.Mode().Perm()&0o700)
	}
	return nil
}

// RemoveDirs removes the empty directories from path up to and including top,
// undoing MkdirMount.
func RemoveDirs(path, top string) error {
	for d := path; ; d = filepath.Dir(d) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if d == top || filepath.Dir(d) == d {
			return nil
		}
	}
}

// MountAt returns the topmost mount on path, or nil if nothing is mounted
// there (or path does not exist). It is how backends tell whether a volume
// is mounted without keeping state of their own.
func MountAt(path string) (*mountinfo.Info, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != real, false
	})
	if err != nil || len(infos) == 0 {
		return nil, err
	}
	return infos[len(infos)-1], nil
}

// MountsUnder lists the volumes mounted under root as <root>/<policy>/<name>
// (with valid names), topmost mount per mount point, sorted by policy and
// name. It backs every backend's Mounted.
func MountsUnder(root string) ([]storage.Mount, error) {
	real, err := filepath.EvalSymlinks(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return nil, err
	}
	byID := map[storage.ID]storage.Mount{}
	for _, in := range infos {
		rel, err := filepath.Rel(real, in.Mountpoint)
		if err != nil {
			continue
		}
		policy, name, ok := strings.Cut(rel, string(filepath.Separator))
		if !ok || config.ValidateName("policy", policy) != nil || config.ValidateName("volume", name) != nil {
			continue
		}
		vid := storage.ID{Policy: policy, Name: name}
		// Later entries are mounted on top of earlier ones.
		byID[vid] = storage.Mount{Volume: vid, Device: in.Source, Path: filepath.Join(root, policy, name)}
	}
	out := make([]storage.Mount, 0, len(byID))
	for _, m := range byID {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b storage.Mount) int {
		return cmp.Or(strings.Compare(a.Volume.Policy, b.Volume.Policy), strings.Compare(a.Volume.Name, b.Volume.Name))
	})
	return out, nil
}

// MountOptions are the options of every volume mount. nosuid and nodev:
// whatever a container writes into a volume (a set-uid root binary, a
// device node) must not give a host user, or a container that mounts the
// volume later, root or raw devices; containers see the volume through a
// bind mount, which keeps these.
func MountOptions(fsType string, noexec bool) string {
	o := "nosuid,nodev"
	if noexec {
		o += ",noexec"
	}
	if fsType == "xfs" {
		// A copy of a snapshot has its origin's UUID, which xfs refuses to
		// mount twice on one host.
		o += ",nouuid"
	}
	return o
}

// Mount mounts dev (holding fsType) on path with MountOptions. It calls
// mount(2) itself: for a block device whose filesystem is known, mount(8)
// adds nothing but starting a process (about 2 ms here, a tenth of a local
// mount's whole work). NFS, which needs mount(8)'s helper, does not come
// here.
func Mount(ctx context.Context, timeout time.Duration, fsType, dev, path string, noexec bool) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if noexec {
		flags |= unix.MS_NOEXEC
	}
	data := ""
	if fsType == "xfs" {
		data = "nouuid" // see MountOptions
	}
	return bounded(ctx, timeout, fmt.Sprintf("mount %s (%s) on %s", dev, fsType, path), func() error {
		return unix.Mount(dev, path, fsType, flags, data)
	})
}

// UnmountAll unmounts everything mounted on path; a path with nothing
// mounted is not an error. Backends never stack mounts, but someone else
// may have; a bounded loop peels them off without risking spinning forever,
// and what is left is storage.ErrInUse.
func UnmountAll(ctx context.Context, timeout time.Duration, path string) error {
	for range 8 {
		m, err := MountAt(path)
		if err != nil || m == nil {
			return err
		}
		err = bounded(ctx, timeout, "umount "+path, func() error { return unix.Unmount(path, 0) })
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w: %w", err, storage.ErrInUse)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			// EINVAL: unmounted by someone else meanwhile; look again.
			return err
		}
	}
	if m, err := MountAt(path); err != nil || m != nil {
		return errors.Join(err, fmt.Errorf("%s is still mounted: %w", path, storage.ErrInUse))
	}
	return nil
}

// bounded runs a system call that may block in the kernel (a mount of a
// device that stopped answering) under ctx and timeout, as sysexec does for
// tools. A call still blocked when they end is left to finish on its own
// goroutine (the kernel cannot be interrupted there, nor could a killed
// mount(8) be) and the caller gets an error wrapping ctx's error.
func bounded(ctx context.Context, timeout time.Duration, what string, call func() error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// MountsOf returns the mounts whose source is one of sources, preferring one
// at prefer (the volume's usual mount point): first in the result if it is
// among them.
func MountsOf(sources []string, prefer string) ([]*mountinfo.Info, error) {
	if len(sources) == 0 {
		return nil, nil
	}
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !slices.Contains(sources, m.Source), false
	})
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(prefer); err == nil {
		slices.SortStableFunc(infos, func(a, b *mountinfo.Info) int {
			switch {
			case a.Mountpoint == real && b.Mountpoint != real:
				return -1
			case b.Mountpoint == real && a.Mountpoint != real:
				return 1
			}
			return 0
		})
	}
	return infos, nil
}

// UnmountAt unmounts path as UnmountAll does, for a volume adopted at a path
// other than its usual one; "" or the usual path itself is a no-op.
func UnmountAt(ctx context.Context, timeout time.Duration, path, usual string) error {
	if path == "" || filepath.Clean(path) == filepath.Clean(usual) {
		return nil
	}
	return UnmountAll(ctx, timeout, path)
}
