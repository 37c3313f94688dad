package volops

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// Restore brings trash entry tref back under its original name, exactly as
// it was removed (record, runtime, usage, snapshot records, image with its
// snapshots), and returns the volume and the revision. It refuses
// (config.ErrExists) while a volume of that name exists, and an entry being
// purged. The records are written first, under the operation lock (mounts
// wait), then the image is restored; if that fails the records go back
// into the trash entry (and the revision returned with the error is that
// of the rollback, for a caller that waits for its own writes).
func (t *Ops) Restore(ctx context.Context, tref config.TrashRef, h store.Holder) (config.Volume, int64, error) {
	if err := tref.Validate(); err != nil {
		return config.Volume{}, 0, err
	}
	e, err := t.Store.BeginRestore(ctx, tref, h, t.now())
	if err != nil {
		return config.Volume{}, 0, err
	}
	ref := tref.Volume
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	rollback := func(err error) (config.Volume, int64, error) {
		rev, rerr := t.Store.RollbackRestore(cctx, e, h)
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("putting %s back into the trash: %w", tref, rerr))
		}
		return config.Volume{}, rev, err
	}
	if e.Handle != "" {
		b, sv, err := t.crud(&e.Volume)
		if err != nil {
			return rollback(err)
		}
		trasher, ok := b.(storage.Trasher)
		if !ok {
			return rollback(fmt.Errorf("backend %s has no trash: %w", e.Volume.Backends.CRUD, config.ErrUnavailable))
		}
		err = t.Call(ctx, e.Volume.Backends.CRUD, "restore", func(bctx context.Context) error {
			return trasher.Restore(bctx, sv, e.Handle)
		})
		if errors.Is(err, storage.ErrExists) {
			err = fmt.Errorf("%w (an image of that name exists in backend %s without a volume record, "+
				"left by volcli volume remove --force? remove or rename it first): %w", err, e.Volume.Backends.CRUD, config.ErrExists)
		}
		if err != nil {
			return rollback(fmt.Errorf("restore %s: %w", tref, err))
		}
	}
	rev, err := t.Store.ReleaseOp(cctx, ref, h)
	if err != nil {
		return config.Volume{}, 0, err
	}
	return e.Volume, rev, nil
}

// Purge destroys trash entry tref for good: the entry is marked purging
// (it can no longer be restored), the backend's trashed image is destroyed
// (one already gone is fine) and the entry deleted. A purge that fails
// half-way leaves the entry marked, and purging it again finishes it.
// guard (volsupervisor's leadership) must hold for each change.
func (t *Ops) Purge(ctx context.Context, tref config.TrashRef, guard ...clientv3.Cmp) (int64, error) {
	if err := tref.Validate(); err != nil {
		return 0, err
	}
	e, err := t.Store.BeginPurge(ctx, tref, guard...)
	if err != nil {
		return 0, err
	}
	if e.Handle != "" {
		b, sv, err := t.crud(&e.Volume)
		if err != nil {
			return 0, err
		}
		trasher, ok := b.(storage.Trasher)
		if !ok {
			return 0, fmt.Errorf("backend %s has no trash: %w", e.Volume.Backends.CRUD, config.ErrUnavailable)
		}
		err = t.Call(ctx, e.Volume.Backends.CRUD, "purge", func(bctx context.Context) error {
			return trasher.Purge(bctx, sv, e.Handle)
		})
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return 0, fmt.Errorf("purge %s: %w", tref, err)
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return t.Store.FinishPurge(cctx, tref, guard...)
}

// PurgeExpired purges every trash entry whose expiry has passed and
// returns those purged. It stops at store.ErrNotLeader; other failures are
// joined and the rest go on.
func (t *Ops) PurgeExpired(ctx context.Context, guard ...clientv3.Cmp) ([]config.TrashRef, error) {
	entries, err := t.Store.ListTrash(ctx, config.VolumeRef{})
	if err != nil {
		return nil, err
	}
	now := t.now()
	var done []config.TrashRef
	var errs []error
	for _, e := range entries {
		if now.Before(e.Expires) {
			continue
		}
		tref := config.TrashRef{Volume: e.Ref(), ID: e.ID}
		_, err := t.Purge(ctx, tref, guard...)
		switch {
		case errors.Is(err, store.ErrNotLeader):
			return done, err
		case errors.Is(err, config.ErrNotFound):
			continue // restored or purged meanwhile
		case err != nil:
			errs = append(errs, err)
			continue
		}
		done = append(done, tref)
	}
	return done, errors.Join(errs...)
}
