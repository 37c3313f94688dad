//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// CreateSnapshot takes RBD snapshot snap of v; storage.ErrExists if it is
// there. A volume mounted on this host is frozen (fsfreeze) meanwhile, so
// the snapshot holds a clean filesystem; one mounted elsewhere gets a
// crash-consistent snapshot. While another client holds the image's lock,
// librbd has that client take the snapshot. The freeze lasts mostly as
// long as the monitors take to allocate the snapshot's id (up to their
// paxos_propose_interval), during which librbd holds the image's writes
// anyway; docs/performance.md has the figures.
func (b *Backend) CreateSnapshot(ctx context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return storage.SnapshotInfo{}, fmt.Errorf("create snapshot: %w", err)
	}
	if err := config.ValidateName("snapshot", snap); err != nil {
		return storage.SnapshotInfo{}, volErr("create snapshot of", v, err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return storage.SnapshotInfo{}, volErr("create snapshot of", v, err)
	}
	defer unlock()
	info, err := b.createSnapshot(ctx, vl, snap)
	if err != nil {
		return info, volErr("create snapshot "+snap+" of", v, err)
	}
	return info, nil
}

func (b *Backend) createSnapshot(ctx context.Context, vl vol, snap string) (storage.SnapshotInfo, error) {
	info := storage.SnapshotInfo{Method: storage.SnapshotNative}
	img, done, err := b.openVolume(ctx, vl, false)
	if err != nil {
		return info, err
	}
	defer done()
	names, err := snapNames(img)
	if err != nil {
		return info, fmt.Errorf("%s: %w", vl.spec(), err)
	}
	if slices.Contains(names, snap) {
		return info, fmt.Errorf("snapshot %s@%s: %w", vl.spec(), snap, storage.ErrExists)
	}
	take := func() error {
		if _, err := img.CreateSnapshot(snap); err != nil {
			return fmt.Errorf("snapshot %s@%s: %w", vl.spec(), snap, cephErr(err))
		}
		return nil
	}
	m, err := fsutil.MountAt(vl.mount)
	if err != nil {
		return info, err
	}
	if m == nil {
		return info, take()
	}
	info.Frozen, err = fsutil.Frozen(ctx, b.host.timeout, vl.mount, take)
	return info, err
}

// RemoveSnapshot removes snap (unprotecting it first); storage.ErrNotFound if
// absent, storage.ErrInUse while it has clones.
func (b *Backend) RemoveSnapshot(ctx context.Context, v storage.Volume, snap string) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	if err := config.ValidateBackendSnapshotName(snap); err != nil {
		return volErr("remove snapshot of", v, err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("remove snapshot of", v, err)
	}
	defer unlock()
	if err := b.removeSnapshot(ctx, vl, snap); err != nil {
		return volErr("remove snapshot "+snap+" of", v, err)
	}
	return nil
}

func (b *Backend) removeSnapshot(ctx context.Context, vl vol, snap string) error {
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return err
	}
	defer io.Destroy()
	img, err := openImage(io, vl, false)
	if err != nil {
		return err
	}
	defer img.Close()
	names, err := snapNames(img)
	if err != nil {
		return fmt.Errorf("%s: %w", vl.spec(), err)
	}
	if !slices.Contains(names, snap) {
		return fmt.Errorf("snapshot %s@%s: %w", vl.spec(), snap, storage.ErrNotFound)
	}
	protected, err := img.GetSnapshot(snap).IsProtected()
	if err != nil {
		return fmt.Errorf("snapshot %s@%s: %w", vl.spec(), snap, cephErr(err))
	}
	if protected {
		kids, err := children(io, vl, snap)
		if err != nil {
			return err
		}
		if len(kids) > 0 {
			return fmt.Errorf("snapshot %s@%s has clones %v: %w", vl.spec(), snap, kids, storage.ErrInUse)
		}
	}
	if err := removeSnapshot(img, snap, protected); err != nil {
		return fmt.Errorf("snapshot %s@%s: %w", vl.spec(), snap, err)
	}
	return nil
}

// removeSnapshot unprotects (if protected) and removes snapshot name.
func removeSnapshot(img *rbd.Image, name string, protected bool) error {
	s := img.GetSnapshot(name)
	if protected {
		if err := s.Unprotect(); err != nil {
			return fmt.Errorf("unprotect: %w", cephErr(err))
		}
	}
	if err := s.Remove(); err != nil {
		return fmt.Errorf("remove: %w", cephErr(err))
	}
	return nil
}

// ListSnapshots returns v's snapshot names, sorted.
func (b *Backend) ListSnapshots(ctx context.Context, v storage.Volume) ([]string, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	img, done, err := b.openVolume(ctx, vl, true)
	if err != nil {
		return nil, volErr("list snapshots of", v, err)
	}
	defer done()
	names, err := snapNames(img)
	if err != nil {
		return nil, volErr("list snapshots of", v, err)
	}
	return names, nil
}

func snapNames(img *rbd.Image) ([]string, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", cephErr(err))
	}
	names := make([]string, len(snaps))
	for i, s := range snaps {
		names[i] = s.Name
	}
	slices.Sort(names)
	return names, nil
}

// children lists the clones of snapshot snap of vl's image as pool/image.
func children(io *rados.IOContext, vl vol, snap string) ([]string, error) {
	img, err := rbd.OpenImageReadOnly(io, vl.image, snap)
	if err != nil {
		return nil, fmt.Errorf("open %s@%s: %w", vl.spec(), snap, cephErr(err))
	}
	defer img.Close()
	pools, images, err := img.ListChildren()
	if err != nil {
		return nil, fmt.Errorf("list clones of %s@%s: %w", vl.spec(), snap, cephErr(err))
	}
	out := make([]string, len(images))
	for i := range images {
		out[i] = pools[i] + "/" + images[i]
	}
	return out, nil
}

// CopySnapshot creates volume to as a clone of snapshot snap of v: the
// snapshot is protected (as clones require) and cloned into to's pool with
// to's features; the clone is grown to to.Size if that is larger. With
// to.Options["flatten"] = "true" the clone is then flattened (it copies the
// data and no longer depends on the snapshot) and the snapshot unprotected if
// nothing else was cloned from it. Without flattening, v cannot be destroyed
// and snap cannot be removed while the copy exists. The copy is made with
// v's Ceph client. storage.ErrNotFound if snap is absent, storage.ErrExists
// if to is there.
func (b *Backend) CopySnapshot(ctx context.Context, v storage.Volume, snap string, to storage.Volume) error {
	src, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	dst, err := b.resolve(to)
	if err != nil {
		return fmt.Errorf("copy snapshot to: %w", err)
	}
	if err := config.ValidateBackendSnapshotName(snap); err != nil {
		return volErr("copy snapshot of", v, err)
	}
	flatten := false
	if s := to.Options[OptFlatten]; s != "" {
		if flatten, err = strconv.ParseBool(s); err != nil {
			return volErr("copy snapshot to", to, fmt.Errorf("option %s=%q is not true or false: %w", OptFlatten, s, config.ErrInvalid))
		}
	}
	opts, err := b.imageOptions(to)
	if err != nil {
		return volErr("copy snapshot to", to, err)
	}
	defer opts.Destroy()
	unlock, err := b.locks.LockPair(ctx, id(v), id(to))
	if err != nil {
		return volErr("copy snapshot of", v, err)
	}
	defer unlock()
	if err := b.copySnapshot(ctx, src, snap, dst, opts, flatten); err != nil {
		return fmt.Errorf("copy snapshot %s of %s/%s to %s/%s: %w", snap, v.Policy, v.Name, to.Policy, to.Name, err)
	}
	return nil
}

func (b *Backend) copySnapshot(ctx context.Context, src vol, snap string, dst vol, opts *rbd.ImageOptions, flatten bool) error {
	dst.client = src.client // one cluster, one client for both ends
	sio, err := b.ioctx(ctx, src)
	if err != nil {
		return err
	}
	defer sio.Destroy()
	dio, err := b.ioctx(ctx, dst)
	if err != nil {
		return err
	}
	defer dio.Destroy()

	img, err := openImage(sio, src, false)
	if err != nil {
		return err
	}
	defer img.Close()
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", cephErr(err))
	}
	i := slices.IndexFunc(snaps, func(s rbd.SnapInfo) bool { return s.Name == snap })
	if i < 0 {
		return fmt.Errorf("snapshot %s@%s: %w", src.spec(), snap, storage.ErrNotFound)
	}
	if existing, err := openImage(dio, dst, true); err == nil {
		_ = existing.Close()
		return fmt.Errorf("image %s: %w", dst.spec(), storage.ErrExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	s := img.GetSnapshot(snap)
	protected, err := s.IsProtected()
	if err != nil {
		return fmt.Errorf("snapshot %s@%s: %w", src.spec(), snap, cephErr(err))
	}
	if !protected {
		if err := s.Protect(); err != nil {
			return fmt.Errorf("protect %s@%s: %w", src.spec(), snap, cephErr(err))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rbd.CloneImage(sio, src.image, snap, dio, dst.image, opts); err != nil {
		return fmt.Errorf("clone %s@%s to %s: %w", src.spec(), snap, dst.spec(), cephErr(err))
	}
	if err := b.finishCopy(ctx, dio, dst, snaps[i].Size, flatten); err != nil {
		// A copy that is not what was asked for is removed, not left behind.
		if rerr := rbd.RemoveImage(dio, dst.image); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: remove %s: %w", dst.spec(), cephErr(rerr)))
		}
		return err
	}
	if !flatten {
		return nil
	}
	kids, err := children(sio, src, snap)
	if err != nil || len(kids) > 0 {
		return err
	}
	if err := s.Unprotect(); err != nil {
		return fmt.Errorf("unprotect %s@%s: %w", src.spec(), snap, cephErr(err))
	}
	return nil
}

// finishCopy grows the new clone to dst.Size and flattens it if asked.
func (b *Backend) finishCopy(ctx context.Context, dio *rados.IOContext, dst vol, snapSize uint64, flatten bool) error {
	if dst.Size <= int64(snapSize) && !flatten {
		return nil
	}
	img, err := openImage(dio, dst, false)
	if err != nil {
		return err
	}
	defer img.Close()
	if dst.Size > int64(snapSize) {
		if err := img.Resize(uint64(dst.Size)); err != nil {
			return fmt.Errorf("grow %s: %w", dst.spec(), cephErr(err))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if flatten {
		if err := img.Flatten(); err != nil {
			return fmt.Errorf("flatten %s: %w", dst.spec(), cephErr(err))
		}
	}
	return nil
}
