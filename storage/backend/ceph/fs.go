package ceph

import (
	"bufio"
	"bytes"
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

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// host runs the filesystem tools (blkid, mkfs, mount, umount, growfs,
// fsfreeze) on a mapped device, each with a timeout.
type host struct {
	timeout time.Duration
}

func (h host) run(ctx context.Context, argv ...string) ([]byte, error) {
	return sysexec.Run(ctx, h.timeout, argv...)
}

// content is what blkid found on a device.
type content struct {
	blank  bool
	fsType string // TYPE, e.g. ext4; empty if not a filesystem
	ptType string // PTTYPE, set for a partition table
}

func (c content) String() string {
	switch {
	case c.blank:
		return "nothing"
	case c.fsType != "":
		return c.fsType
	case c.ptType != "":
		return "a " + c.ptType + " partition table"
	default:
		return "unrecognised content"
	}
}

// blkidNothingFound is blkid's exit status when it recognises nothing.
const blkidNothingFound = 2

// probe reads the device itself (--probe bypasses blkid's cache, which can
// be stale for a reused loop or rbd device).
func (h host) probe(ctx context.Context, dev string) (content, error) {
	out, err := h.run(ctx, "blkid", "--probe", "--output", "export", dev)
	if sysexec.ExitCode(err) == blkidNothingFound {
		return content{blank: true}, nil
	}
	if err != nil {
		return content{}, fmt.Errorf("probe %s: %w", dev, err)
	}
	var c content
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, val, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "TYPE":
			c.fsType = val
		case "PTTYPE":
			c.ptType = val
		}
	}
	return c, nil
}

// formatIfBlank formats dev with v.Mkfs if (and only if) it is blank and
// returns the filesystem type on it. A device holding anything other than
// v.Filesystem is storage.ErrWrongFilesystem: it is never reformatted.
func (h host) formatIfBlank(ctx context.Context, v storage.Volume, dev string) (string, error) {
	c, err := h.probe(ctx, dev)
	if err != nil {
		return "", err
	}
	switch {
	case c.blank:
		if len(v.Mkfs) == 0 {
			return "", fmt.Errorf("%s is blank and no mkfs command is set: %w", dev, config.ErrInvalid)
		}
		if _, err := h.run(ctx, config.FSCommand(v.Mkfs).Argv(dev)...); err != nil {
			return "", fmt.Errorf("format %s: %w", dev, err)
		}
		return v.Filesystem, nil
	case c.fsType == "" || (v.Filesystem != "" && c.fsType != v.Filesystem):
		return "", fmt.Errorf("%s holds %s, not %s: %w", dev, c, v.Filesystem, storage.ErrWrongFilesystem)
	}
	return c.fsType, nil
}

// mount mounts dev (holding fsType) on path.
func (h host) mount(ctx context.Context, fsType, dev, path string) error {
	argv := []string{"mount"}
	if fsType == "xfs" {
		// A copy of a snapshot has its origin's UUID, which xfs refuses to
		// mount twice on one host.
		argv = append(argv, "-o", "nouuid")
	}
	if _, err := h.run(ctx, append(argv, dev, path)...); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	return nil
}

// unmountAll unmounts everything mounted on path. Mount never stacks mounts,
// but someone else may have; a bounded loop peels them off without risking
// spinning forever.
func (h host) unmountAll(ctx context.Context, path string) error {
	for range 8 {
		m, err := mountAt(path)
		if err != nil || m == nil {
			return err
		}
		if _, err := h.run(ctx, "umount", path); err != nil {
			return err
		}
	}
	if m, err := mountAt(path); err != nil || m != nil {
		return errors.Join(err, fmt.Errorf("%s is still mounted: %w", path, storage.ErrInUse))
	}
	return nil
}

// growOnline grows the filesystem mounted on path from dev to the device's
// size.
func (h host) growOnline(ctx context.Context, fsType, dev, path string) error {
	var argv []string
	switch fsType {
	case "ext2", "ext3", "ext4":
		argv = []string{"resize2fs", dev}
	case "xfs":
		argv = []string{"xfs_growfs", path}
	default:
		return fmt.Errorf("grow %s filesystem: %w", fsType, storage.ErrUnsupported)
	}
	if _, err := h.run(ctx, argv...); err != nil {
		return fmt.Errorf("grow filesystem: %w", err)
	}
	return nil
}

// frozen runs fn with the filesystem on path frozen, so that a snapshot taken
// meanwhile is consistent. The thaw runs even if ctx is cancelled.
func (h host) frozen(ctx context.Context, path string, fn func() error) (err error) {
	if _, err := h.run(ctx, "fsfreeze", "--freeze", path); err != nil {
		return fmt.Errorf("freeze %s: %w", path, err)
	}
	defer func() {
		if _, uerr := h.run(context.WithoutCancel(ctx), "fsfreeze", "--unfreeze", path); uerr != nil {
			err = errors.Join(err, fmt.Errorf("thaw %s: %w", path, uerr))
		}
	}()
	return fn()
}

// mkdirMount creates the mount point and returns the topmost directory it
// created ("" if none), so that a rollback removes exactly those.
func mkdirMount(path string) (created string, err error) {
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
	if err := os.MkdirAll(path, 0o755); err != nil {
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

// removeDirs removes the empty directories from path up to and including top.
func removeDirs(path, top string) error {
	for d := path; ; d = filepath.Dir(d) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if d == top || filepath.Dir(d) == d {
			return nil
		}
	}
}

// mountAt returns the topmost mount on path, or nil if nothing is mounted
// there (or path does not exist).
func mountAt(path string) (*mountinfo.Info, error) {
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

// mountsUnder lists the volumes mounted under root as <root>/<policy>/<name>,
// topmost mount per mount point, sorted by policy and name.
func mountsUnder(root string) ([]storage.Mount, error) {
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
