package volops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
)

// Create writes v's record, runtime and operation lock (within limits),
// makes its image and drops the lock. If the image cannot be made the
// record is rolled back, so there is never a record without an image or an
// image without a record. It returns the revision the caller waits for to
// read its own write, on a rolled-back failure too (no volume).
func (t *Ops) Create(ctx context.Context, v config.Volume, limits config.Limits, h store.Holder) (int64, error) {
	ref := v.Ref()
	b, sv, err := t.crud(&v)
	if err != nil {
		return 0, err
	}
	if _, err := t.Store.CreateVolumeWithin(ctx, v, h, limits); err != nil {
		return 0, err
	}
	faultpoint.Hit(ctx, "create.recorded", ref.String())
	if b != nil {
		err := t.Call(ctx, v.Backends.CRUD, "create", func(bctx context.Context) error { return b.Create(bctx, sv) })
		if err != nil {
			return t.rollbackCreate(ctx, ref, h, fmt.Errorf("create volume %s: %w", ref, err))
		}
		faultpoint.Hit(ctx, "create.made", ref.String())
	}
	return t.Store.ReleaseOp(context.WithoutCancel(ctx), ref, h)
}

// rollbackCreate deletes the record (and lock) of a create or copy whose
// image could not be made, and returns err with the rollback's revision.
func (t *Ops) rollbackCreate(ctx context.Context, ref config.VolumeRef, h store.Holder, err error) (int64, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	rev, rerr := t.Store.RollbackCreate(cctx, ref, h)
	if rerr != nil {
		return 0, errors.Join(err, fmt.Errorf("rolling back the record of %s: %w", ref, rerr))
	}
	return rev, err
}

// Copy creates volume to (same policy, within limits) from snapshot snap of
// volume from, under from's operation lock, which keeps the snapshot from
// being pruned meanwhile; the new volume's record is rolled back if the
// copy fails. It returns the new volume and the revision to wait for (on a
// rolled-back failure too).
func (t *Ops) Copy(ctx context.Context, from config.VolumeRef, snap string, to config.VolumeRef, limits config.Limits, h store.Holder) (config.Volume, int64, error) {
	snaps, err := t.Store.ListSnapshots(ctx, from)
	if err != nil {
		return config.Volume{}, 0, err
	}
	i := slices.IndexFunc(snaps, func(sn config.Snapshot) bool { return sn.Name == snap })
	if i < 0 {
		return config.Volume{}, 0, fmt.Errorf("snapshot %s of volume %s: %w", snap, from, config.ErrNotFound)
	}
	src, err := t.Store.BeginOp(ctx, from, "copy", h, false)
	if err != nil {
		return config.Volume{}, 0, err
	}
	defer t.release(ctx, from, h)
	b, ok := t.Backends[src.Backends.Snapshot]
	if !ok {
		return config.Volume{}, 0, fmt.Errorf("volume %s: snapshot backend %q is not configured here: %w", from, src.Backends.Snapshot, config.ErrUnavailable)
	}
	nv := src
	// The copy is a new image under the name the backend derives.
	nv.Name, nv.CreatedAt, nv.Image = to.Name, t.now().UTC(), ""
	// The copy is formatted if the snapshot was taken after the source's
	// first mkfs was recorded; otherwise its first mount checks it as any
	// volume not marked yet (and marks it if it holds a filesystem).
	if snaps[i].Time.Before(src.FormattedAt) {
		nv.FormattedAt = time.Time{}
	}
	srcSV, err := storage.FromConfig(&src)
	if err != nil {
		return config.Volume{}, 0, err
	}
	dstSV, err := storage.FromConfig(&nv)
	if err != nil {
		return config.Volume{}, 0, err
	}
	if _, err := t.Store.CreateVolumeFrom(ctx, nv, h, limits, from.String()+"@"+snap); err != nil {
		return config.Volume{}, 0, err
	}
	err = t.Call(ctx, src.Backends.Snapshot, "copy", func(bctx context.Context) error {
		return b.CopySnapshot(bctx, srcSV, snaps[i].BackendName(), dstSV)
	})
	if err != nil {
		rev, err := t.rollbackCreate(ctx, to, h, fmt.Errorf("copy snapshot %s of %s to %s: %w", snap, from, to, err))
		return config.Volume{}, rev, err
	}
	rev, err := t.Store.ReleaseOp(context.WithoutCancel(ctx), to, h)
	if err != nil {
		return config.Volume{}, 0, err
	}
	return nv, rev, nil
}
