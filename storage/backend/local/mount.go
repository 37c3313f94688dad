package local

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

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// MountPath is <MountRoot>/<policy>/<name>, or "" if v's names are invalid.
func (b *Backend) MountPath(v storage.Volume) string {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return ""
	}
	return p.mount
}

// Mount attaches v's image to a loop device, formats it if blank, and mounts
// it at MountPath(v). A device holding another filesystem than v.Filesystem
// is refused with storage.ErrWrongFilesystem, never reformatted. If any step
// fails, what this call set up is undone.
func (b *Backend) Mount(ctx context.Context, v storage.Volume) (storage.Mount, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, fmt.Errorf("mount: %w", err)
	}
	unlock, err := b.locks.lock(ctx, v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	defer unlock()
	if err := statImage(p.image); err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	m, err := mountAt(p.mount)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	if m != nil {
		return storage.Mount{Volume: id(v), Device: m.Source, Path: p.mount}, nil
	}
	dev, err := b.mount(ctx, v, p)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	return storage.Mount{Volume: id(v), Device: dev, Path: p.mount}, nil
}

func (b *Backend) mount(ctx context.Context, v storage.Volume, p paths) (dev string, err error) {
	var undo []func(context.Context) error
	defer func() {
		if err == nil {
			return
		}
		// Roll back even if ctx was cancelled; each step still has its timeout.
		rctx := context.WithoutCancel(ctx)
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](rctx); uerr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", uerr))
			}
		}
	}()

	devs, err := b.loops(ctx, p.image)
	if err != nil {
		return "", err
	}
	if len(devs) > 0 {
		// Reuse an attachment left by a crash or a failed Unmount rather
		// than attaching the same file twice.
		dev = devs[0]
	} else {
		if dev, err = b.attach(ctx, p.image); err != nil {
			return "", err
		}
		// A copy: dev is the result, which a failing return sets to "".
		attached := dev
		undo = append(undo, func(ctx context.Context) error { return b.detach(ctx, attached) })
	}

	c, err := b.probe(ctx, dev)
	if err != nil {
		return "", err
	}
	fsType := c.fsType
	switch {
	case c.blank:
		if len(v.Mkfs) == 0 {
			return "", fmt.Errorf("%s is blank and no mkfs command is set: %w", dev, config.ErrInvalid)
		}
		if _, err := sysexec.Run(ctx, b.timeout, config.FSCommand(v.Mkfs).Argv(dev)...); err != nil {
			return "", fmt.Errorf("format %s: %w", dev, err)
		}
		fsType = v.Filesystem
	case c.fsType == "" || (v.Filesystem != "" && c.fsType != v.Filesystem):
		return "", fmt.Errorf("%s holds %s, not %s: %w", dev, c, v.Filesystem, storage.ErrWrongFilesystem)
	}

	created, err := mkdirMount(p.mount)
	if created != "" {
		undo = append(undo, func(context.Context) error { return removeDirs(p.mount, created) })
	}
	if err != nil {
		return "", err
	}
	// A mount(8) killed by the timeout may have mounted all the same.
	undo = append(undo, func(ctx context.Context) error {
		if m, err := mountAt(p.mount); err != nil || m == nil {
			return err
		}
		_, err := sysexec.Run(ctx, b.timeout, "umount", p.mount)
		return err
	})
	argv := []string{"mount"}
	if fsType == "xfs" {
		// Snapshot copies share their origin's UUID, which xfs refuses to
		// mount twice.
		argv = append(argv, "-o", "nouuid")
	}
	if _, err := sysexec.Run(ctx, b.timeout, append(argv, dev, p.mount)...); err != nil {
		return "", err
	}
	return dev, nil
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
	// The mount point is followed by mount(8); it must be a real directory,
	// not a symlink planted to redirect the mount.
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

// Unmount unmounts v, detaches every loop device backed by its image and
// removes the mount point. A volume that is not mounted is not an error.
func (b *Backend) Unmount(ctx context.Context, v storage.Volume) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	unlock, err := b.locks.lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("unmount", v, err)
	}
	defer unlock()
	// Mount never stacks mounts, but someone else may have; a bounded loop
	// peels them off without risking spinning forever.
	for range 8 {
		m, err := mountAt(p.mount)
		if err != nil {
			return volErr("unmount", v, err)
		}
		if m == nil {
			break
		}
		if _, err := sysexec.Run(ctx, b.timeout, "umount", p.mount); err != nil {
			return volErr("unmount", v, err)
		}
	}
	if m, err := mountAt(p.mount); err != nil || m != nil {
		return volErr("unmount", v, errors.Join(err, fmt.Errorf("%s is still mounted: %w", p.mount, storage.ErrInUse)))
	}
	// With the image gone losetup cannot match it; nothing of ours is left.
	if _, err := os.Stat(p.image); err == nil {
		if err := b.detachAll(ctx, p.image); err != nil {
			return volErr("unmount", v, err)
		}
	}
	// A mount point someone wrote into while unmounted is left alone.
	if err := os.Remove(p.mount); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return volErr("unmount", v, err)
	}
	removeEmpty(filepath.Dir(p.mount))
	return nil
}

// Mounted lists the volumes mounted under the mount root, topmost mount per
// mount point, sorted by policy and name.
func (b *Backend) Mounted(ctx context.Context) ([]storage.Mount, error) {
	root, err := filepath.EvalSymlinks(b.mountRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	byID := map[storage.ID]storage.Mount{}
	for _, in := range infos {
		rel, err := filepath.Rel(root, in.Mountpoint)
		if err != nil {
			continue
		}
		policy, name, ok := strings.Cut(rel, string(filepath.Separator))
		if !ok {
			continue
		}
		p, err := b.paths(policy, name)
		if err != nil {
			continue
		}
		// Later entries are mounted on top of earlier ones.
		byID[storage.ID{Policy: policy, Name: name}] = storage.Mount{
			Volume: storage.ID{Policy: policy, Name: name},
			Device: in.Source,
			Path:   p.mount,
		}
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
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, nil
	}
	return infos[len(infos)-1], nil
}

// mountedFrom returns a mount point of one of devs, or "" if none is mounted.
func mountedFrom(devs []string) (string, error) {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !slices.Contains(devs, m.Source), false
	})
	if err != nil || len(infos) == 0 {
		return "", err
	}
	return infos[0].Mountpoint, nil
}

func id(v storage.Volume) storage.ID { return storage.ID{Policy: v.Policy, Name: v.Name} }
