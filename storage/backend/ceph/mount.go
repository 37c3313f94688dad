//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// MountPath is <MountRoot>/<policy>/<name>, or "" if v's names are invalid.
func (b *Backend) MountPath(v storage.Volume) string {
	vl, err := b.resolve(v)
	if err != nil {
		return ""
	}
	return vl.mount
}

// Mount maps v's image with the configured mapper, formats it if (and only
// if) it is blank and was never formatted, and mounts it at MountPath(v). A
// device holding another filesystem than v.Filesystem is
// storage.ErrWrongFilesystem, a formatted volume whose filesystem is not
// recognised storage.ErrDamaged: never reformatted. Mounting a mounted volume returns the existing mount; an
// image still mapped here (after a crash) is reused.
//
// An image that another client has open or locked (mapped on another host)
// is storage.ErrInUse: the caller decides whether that host is dead and, if
// so, calls BreakLock and then Mount again. If any step fails, what this call
// set up is undone.
func (b *Backend) Mount(ctx context.Context, v storage.Volume) (storage.Mount, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return storage.Mount{}, fmt.Errorf("mount: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	defer unlock()
	m, err := fsutil.MountAt(vl.mount)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	if m != nil {
		return storage.Mount{Volume: id(v), Device: m.Source, Path: vl.mount}, nil
	}
	dev, err := b.mount(ctx, vl)
	if err != nil {
		return storage.Mount{}, volErr("mount", v, err)
	}
	return storage.Mount{Volume: id(v), Device: dev, Path: vl.mount}, nil
}

func (b *Backend) mount(ctx context.Context, vl vol) (dev string, err error) {
	var undo fsutil.Undo
	defer func() { err = undo.Run(ctx, err) }()

	mp, err := b.getMapper(ctx)
	if err != nil {
		return "", err
	}
	img := vl.mapperImage()
	if dev, err = mp.Device(ctx, img); err != nil {
		return "", err
	}
	zeroed := false
	if dev == "" {
		zeroed, err = b.claim(ctx, vl)
		if err != nil {
			return "", err
		}
		// Registered before Map: a map that fails half way (timed out after
		// the kernel mapped, say) is undone too; Unmap of nothing is a no-op.
		undo.Push(func(ctx context.Context) error { return mp.Unmap(ctx, img) })
		if dev, err = mp.Map(ctx, img); err != nil {
			return "", err
		}
	}

	// dev is unmapped again when the mount fails: a repair maps the image.
	repair := fsutil.Repair{Path: "/dev/rbd/" + vl.pool + "/" + vl.image, Setup: "rbd map " + vl.pool + "/" + vl.image, Zeroed: zeroed}
	if err := fsutil.MountDevice(ctx, b.host.timeout, vl.Volume, dev, repair, b.cfg.MountRoot, vl.mount, &undo); err != nil {
		return "", err
	}
	return dev, nil
}

// claim checks that vl's image exists and that no other client has it open
// or locked, and records this host as the one mapping it. Between claim and
// the mapper taking the lock another host could claim too; the caller's
// cross-host mount lock (etcd) is what excludes that. For a volume never
// formatted it also reports whether the image is zeroed (see zeroed), which
// spares the device probes before its first mkfs.
func (b *Backend) claim(ctx context.Context, vl vol) (bool, error) {
	conn, err := b.conn(ctx, vl.client)
	if err != nil {
		return false, err
	}
	img, done, err := b.openVolume(ctx, vl, false)
	if err != nil {
		return false, err
	}
	defer done()
	hs, err := holders(conn, img)
	if err != nil {
		return false, fmt.Errorf("image %s: %w", vl.spec(), err)
	}
	if len(hs) > 0 {
		return false, heldErr(img, vl, hs)
	}
	if err := img.SetMetadata(metaHost, b.cfg.Host); err != nil {
		return false, fmt.Errorf("record host on %s: %w", vl.spec(), cephErr(err))
	}
	return !vl.Formatted && zeroed(img), nil
}

// zeroed reports whether img has no allocated object, its parent's
// included (a clone), so that it reads as zeros from end to end. Only with
// fast-diff, where librbd answers from the object map (one read) rather
// than asking every object; false when it cannot tell, so that the device
// is probed as before. (With the object map flagged invalid librbd asks
// every object after all: slow on a big image, but only on its first mount.)
func zeroed(img *rbd.Image) bool {
	features, err := img.GetFeatures()
	if err != nil || features&rbd.FeatureFastDiff == 0 {
		return false
	}
	size, err := img.GetSize()
	if err != nil {
		return false
	}
	found := false
	err = img.DiffIterate(rbd.DiffIterateConfig{
		SnapName:      rbd.NoSnapshot,
		Length:        size,
		IncludeParent: rbd.IncludeParent,
		WholeObject:   rbd.EnableWholeObject,
		Callback: func(_, _ uint64, exists int, _ any) int {
			if exists != 0 {
				found = true
				return -1 // stop: one is enough
			}
			return 0
		},
	})
	return err == nil && !found
}

// Unmount unmounts v, unmaps its image and removes the mount point. A volume
// that is neither mounted nor mapped is not an error. It needs no cluster
// connection, but with the fuse mapper the cluster must be up (an rbd-fuse
// that cannot reach it stalls the unmount until its timeout).
func (b *Backend) Unmount(ctx context.Context, v storage.Volume) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("unmount", v, err)
	}
	defer unlock()
	err = fsutil.UnmountDevice(ctx, b.host.timeout, vl.mount, v.MountedAt, func(ctx context.Context) error {
		mp, err := b.getMapper(ctx)
		if errors.Is(err, mapper.ErrUnavailable) {
			return nil // nothing can be mapped on a host without a mapper
		}
		if err != nil {
			return err
		}
		return mp.Unmap(ctx, vl.mapperImage())
	})
	if err != nil {
		return volErr("unmount", v, err)
	}
	return nil
}

// Mounted lists the volumes mounted under the mount root, sorted by policy
// and name.
func (b *Backend) Mounted(ctx context.Context) ([]storage.Mount, error) {
	ms, err := fsutil.MountsUnder(b.cfg.MountRoot)
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	return ms, nil
}
