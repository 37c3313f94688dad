//go:build cgo && pacific

package ceph

import (
	"context"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/storage"
)

var _ storage.Trasher = (*Backend)(nil)

// Trash moves v's image, snapshots included, into its pool's rbd trash
// with a deferment of keep (rbd refuses to drop it on its own before) and
// returns its rbd image ID. The checks are Destroy's: refused while mounted
// here, open (mapped) or locked by any client, or a snapshot has clones.
func (b *Backend) Trash(ctx context.Context, v storage.Volume, keep time.Duration) (string, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return "", fmt.Errorf("trash: %w", err)
	}
	if keep < 0 {
		keep = 0
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return "", volErr("trash", v, err)
	}
	defer unlock()
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return "", volErr("trash", v, err)
	}
	defer io.Destroy()
	img, _, err := b.openIdle(ctx, io, vl)
	if err != nil {
		return "", volErr("trash", v, err)
	}
	id, err := img.GetId()
	if cerr := img.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cephErr(cerr))
	}
	if err != nil {
		return "", volErr("trash", v, fmt.Errorf("image %s: %w", vl.spec(), cephErr(err)))
	}
	if err := rbd.GetImage(io, vl.image).Trash(keep); err != nil {
		return "", volErr("trash", v, fmt.Errorf("move %s to the trash: %w", vl.spec(), cephErr(err)))
	}
	return id, nil
}

// Restore moves the trashed image with rbd ID handle back under v's name;
// storage.ErrExists if an image of that name exists.
func (b *Backend) Restore(ctx context.Context, v storage.Volume, handle string) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if handle == "" {
		return volErr("restore", v, fmt.Errorf("empty trash handle: %w", storage.ErrNotFound))
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("restore", v, err)
	}
	defer unlock()
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return volErr("restore", v, err)
	}
	defer io.Destroy()
	if err := rbd.TrashRestore(io, handle, vl.image); err != nil {
		return volErr("restore", v, fmt.Errorf("restore rbd trash entry %s as %s: %w", handle, vl.spec(), cephErr(err)))
	}
	return nil
}

// Purge removes the trashed image with rbd ID handle and its snapshots
// (unprotecting them; refused, storage.ErrInUse, while one has clones),
// deferment or not; storage.ErrNotFound if it is not in the trash.
func (b *Backend) Purge(ctx context.Context, v storage.Volume, handle string) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	if handle == "" {
		return volErr("purge", v, fmt.Errorf("empty trash handle: %w", storage.ErrNotFound))
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("purge", v, err)
	}
	defer unlock()
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return volErr("purge", v, err)
	}
	defer io.Destroy()
	spec := vl.pool + "/" + handle + " (trashed " + vl.image + ")"
	img, err := rbd.OpenImageById(io, handle, rbd.NoSnapshot)
	if err != nil {
		return volErr("purge", v, fmt.Errorf("open %s: %w", spec, cephErr(err)))
	}
	snaps, err := snapshotsWithoutClones(img, spec, func(snap string) ([]string, error) {
		s, err := rbd.OpenImageByIdReadOnly(io, handle, snap)
		if err != nil {
			return nil, fmt.Errorf("open %s@%s: %w", spec, snap, cephErr(err))
		}
		defer s.Close()
		pools, images, err := s.ListChildren()
		if err != nil {
			return nil, fmt.Errorf("list clones of %s@%s: %w", spec, snap, cephErr(err))
		}
		out := make([]string, len(images))
		for i := range images {
			out[i] = pools[i] + "/" + images[i]
		}
		return out, nil
	})
	if err == nil {
		err = purgeSnapshots(ctx, img, spec, snaps)
	}
	if cerr := img.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", spec, cephErr(cerr))
	}
	if err != nil {
		return volErr("purge", v, err)
	}
	if err := rbd.TrashRemove(io, handle, true); err != nil {
		return volErr("purge", v, fmt.Errorf("remove %s from the trash: %w", spec, cephErr(err)))
	}
	return nil
}
