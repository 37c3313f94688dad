package local

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/moby/sys/mountinfo"

	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// MountPath is <MountRoot>/<policy>/<name>, or "" if v's names are invalid.
func (b *Backend) MountPath(v storage.Volume) string {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return ""
	}
	return p.mount
}

// Mount attaches v's image to a loop device, formats it if blank (and never
// formatted before), and mounts it at MountPath(v). A device holding another
// filesystem than v.Filesystem is refused with storage.ErrWrongFilesystem, a
// formatted volume whose filesystem is not recognised with
// storage.ErrDamaged, never reformatted. If any step fails, what this call
// set up is undone.
func (b *Backend) Mount(ctx context.Context, v storage.Volume) (storage.Mount, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, fmt.Errorf("mount: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	defer unlock()
	if err := statImage(p.image); err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	m, err := fsutil.MountAt(p.mount)
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
	var undo fsutil.Undo
	defer func() { err = undo.Run(ctx, err) }()

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
		undo.Push(func(ctx context.Context) error { return b.detach(ctx, attached) })
	}

	// A repair runs on the image file itself: dev is detached again when
	// the mount fails.
	faultpoint.Hit(context.WithoutCancel(ctx), "local.mount.attached", v.Policy+"/"+v.Name)
	if err := fsutil.MountDevice(ctx, b.timeout, v, dev, fsutil.Repair{Path: p.image, File: true}, b.mountRoot, p.mount, &undo); err != nil {
		return "", err
	}
	return dev, nil
}

// Unmount unmounts v, detaches every loop device backed by its image and
// removes the mount point. A volume that is not mounted is not an error.
func (b *Backend) Unmount(ctx context.Context, v storage.Volume) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("unmount", v, err)
	}
	defer unlock()
	err = fsutil.UnmountDevice(ctx, b.timeout, p.mount, v.MountedAt, func(ctx context.Context) error {
		// With the image gone losetup cannot match it; nothing of ours is left.
		if _, err := os.Stat(p.image); err != nil {
			return nil
		}
		return b.detachAll(ctx, p.image)
	})
	if err != nil {
		return volErr("unmount", v, err)
	}
	return nil
}

// Mounted lists the volumes mounted under the mount root, topmost mount per
// mount point, sorted by policy and name.
func (b *Backend) Mounted(ctx context.Context) ([]storage.Mount, error) {
	ms, err := fsutil.MountsUnder(b.mountRoot)
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	return ms, nil
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
