package volops

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
)

// RemoveCheck decides, from a volume, its usage record (nil if none) and
// the time, whether the volume may be removed (nil) or not (an error).
type RemoveCheck func(v *config.Volume, u *config.Usage, now time.Time) error

// Manual is the check of a user's remove (volcli volume remove, DELETE
// /v1/volumes/..., docker volume rm): refused for a protected volume
// (config.ErrProtected, naming volcli volume remove --unprotect), and while
// the volume's last mount has no recorded unmount. A mount lock refuses it
// too (in BeginRemove).
func Manual(v *config.Volume, u *config.Usage, now time.Time) error {
	if v.Protect {
		return config.ProtectedError(v.Ref())
	}
	return Unprotect(v, u, now)
}

// Unprotect is Manual for a remove that names the volume's protection
// (volcli volume remove --unprotect): protect does not refuse it.
func Unprotect(v *config.Volume, u *config.Usage, now time.Time) error {
	return config.Decide(v, u, false, 0, now).RemoveError(v.Ref())
}

// Collect is the check of volsupervisor's removal of ephemeral and
// reclaimable volumes: config.Decide must say Remove, with the given grace.
// A protected volume is never removed this way.
func Collect(grace time.Duration) RemoveCheck {
	return func(v *config.Volume, u *config.Usage, now time.Time) error {
		vd := config.Decide(v, u, false, grace, now)
		if vd.Remove {
			return nil
		}
		why := vd.Reason
		switch {
		case v.Protect:
			why = "protected"
		case why == "":
			why = "neither an unmounted ephemeral volume nor reclaimable with reclaim.enabled"
		}
		return fmt.Errorf("volume %s is kept: %s: %w", v.Ref(), why, config.ErrInUse)
	}
}

// Usage reads what the removal rule (config.Decide) needs beside the
// volumes: every usage record, and which volumes hold a mount lock. Both
// the reclaim list (volmaster) and the removals (volsupervisor) start here.
func (t *Ops) Usage(ctx context.Context) (map[config.VolumeRef]config.Usage, map[config.VolumeRef]bool, error) {
	usage, err := t.Store.Usages(ctx)
	if err != nil {
		return nil, nil, err
	}
	uses, err := t.Store.ListUses(ctx)
	if err != nil {
		return nil, nil, err
	}
	locked := make(map[config.VolumeRef]bool, len(uses))
	for _, u := range uses {
		locked[u.Volume] = true
	}
	return usage, locked, nil
}

// Removed says what a removal did.
type Removed struct {
	// Revision is the etcd revision of the record's removal.
	Revision int64
	// Trash is the volume's trash entry; nil if it was destroyed at once
	// (an ephemeral volume, or a backend without a trash).
	Trash *config.TrashEntry
}

// Remove is Discard returning only the revision.
func (t *Ops) Remove(ctx context.Context, ref config.VolumeRef, check RemoveCheck, h store.Holder, guard ...clientv3.Cmp) (int64, error) {
	r, err := t.Discard(ctx, ref, check, h, guard...)
	return r.Revision, err
}

// Discard removes a volume that no host has mounted, no operation holds and
// check allows. check sees the usage record as read just before the
// operation lock is taken, and the lock is taken only if the record is
// still the same then. The volume goes to the trash (its image to the
// backend's trash, its records into a trash entry, for its
// trash.retention) unless it is ephemeral or its backend has no trash:
// then the image is destroyed and the records deleted. Either way the
// image goes first and the records follow in one transaction; if the
// records cannot follow, a trashed image is restored, so there is never a
// record without an image nor an image without a record.
func (t *Ops) Discard(ctx context.Context, ref config.VolumeRef, check RemoveCheck, h store.Holder, guard ...clientv3.Cmp) (Removed, error) {
	cur, err := t.Store.GetVolume(ctx, ref)
	if err != nil {
		return Removed{}, err
	}
	u, usageRev, err := t.Store.GetUsage(ctx, ref)
	if err != nil {
		return Removed{}, err
	}
	// Mounted now: say so (BeginRemove checks it again, atomically).
	switch use, err := t.Store.GetUse(ctx, ref); {
	case err == nil:
		return Removed{}, fmt.Errorf("volume %s is mounted on host %q: %w", ref, use.Hostname, config.ErrInUse)
	case !errors.Is(err, config.ErrNotFound):
		return Removed{}, err
	}
	if err := check(&cur, u, t.now()); err != nil {
		return Removed{}, err
	}
	v, err := t.Store.BeginRemove(ctx, ref, h, usageRev, guard...)
	if err != nil {
		return Removed{}, err
	}
	faultpoint.Hit(ctx, "remove.locked", ref.String())
	if !v.CreatedAt.Equal(cur.CreatedAt) {
		t.release(ctx, ref, h)
		return Removed{}, fmt.Errorf("volume %s was removed and created again meanwhile, try again: %w", ref, config.ErrBusy)
	}
	b, sv, err := t.crud(&v)
	if err != nil {
		t.release(ctx, ref, h)
		return Removed{}, err
	}
	trasher, _ := b.(storage.Trasher)
	if v.Ephemeral || (b != nil && trasher == nil) {
		return t.destroy(ctx, &v, b, sv, h)
	}
	return t.trash(ctx, &v, trasher, sv, h, guard)
}

// destroy destroys v's image (if it has one) and then deletes its records.
func (t *Ops) destroy(ctx context.Context, v *config.Volume, b storage.CRUD, sv storage.Volume, h store.Holder) (Removed, error) {
	ref := v.Ref()
	if b != nil {
		err := t.Call(ctx, v.Backends.CRUD, "destroy", func(bctx context.Context) error {
			return t.fencingStale(bctx, b, sv, func() error { return b.Destroy(bctx, sv) })
		})
		// An image already gone is what we wanted.
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.release(ctx, ref, h)
			return Removed{}, fmt.Errorf("remove volume %s: %w", ref, err)
		}
		faultpoint.Hit(ctx, "remove.destroyed", ref.String())
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	rev, err := t.Store.FinishRemove(cctx, ref, h)
	return Removed{Revision: rev}, err
}

// trash moves v's image (if it has one) to the backend's trash and then
// its records into a trash entry; if the records cannot be moved, the
// image is restored.
func (t *Ops) trash(ctx context.Context, v *config.Volume, b storage.Trasher, sv storage.Volume, h store.Holder, guard []clientv3.Cmp) (Removed, error) {
	ref := v.Ref()
	now := t.now().UTC()
	keep := v.Trash.RetentionOrDefault()
	e := config.TrashEntry{ID: config.TrashID(now), RemovedAt: now, RemovedBy: t.By, Expires: now.Add(keep)}
	if b != nil {
		var handle string
		err := t.Call(ctx, v.Backends.CRUD, "trash", func(bctx context.Context) error {
			return t.fencingStale(bctx, b, sv, func() (err error) {
				handle, err = b.Trash(bctx, sv, keep)
				return err
			})
		})
		if err != nil {
			t.release(ctx, ref, h)
			return Removed{}, fmt.Errorf("remove volume %s: %w", ref, err)
		}
		e.Handle = handle
		// Said in the intent before the records follow: a remove cut short
		// from here on is undone by restoring the image (volmaster's
		// recovery). If it cannot be said, the image comes back now.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		err = t.Store.SetIntentHandle(cctx, ref, h, handle)
		cancel()
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			if rerr := b.Restore(rctx, sv, handle); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restoring image of %s from the backend's trash (handle %s): %w", ref, handle, rerr))
			}
			cancel()
			t.release(ctx, ref, h)
			return Removed{}, err
		}
		faultpoint.Hit(ctx, "remove.destroyed", ref.String())
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	stored, rev, err := t.Store.FinishTrash(cctx, ref, e, h, guard...)
	if err == nil {
		return Removed{Revision: rev, Trash: &stored}, nil
	}
	if b != nil {
		// Committed after all (an answer lost on the way)? Then the entry
		// is there and the image must stay in the trash.
		if got, _, gerr := t.Store.GetTrash(cctx, config.TrashRef{Volume: ref, ID: e.ID}); gerr == nil {
			return Removed{Trash: &got}, nil
		}
		start := time.Now()
		rerr := b.Restore(cctx, sv, e.Handle)
		t.observe(v.Backends.CRUD, "restore", start, rerr)
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring image of %s from the backend's trash (handle %s): %w", ref, e.Handle, rerr))
		}
	}
	t.release(ctx, ref, h)
	return Removed{}, err
}

// lockBreaker fences the clients that still hold an image (Ceph: a host
// that died with it mapped keeps its watch and exclusive lock).
type lockBreaker interface {
	BreakLock(ctx context.Context, v storage.Volume, reason string) error
}

// fencingStale runs op, a Trash or Destroy of sv's image under a remove's
// operation lock. By then the records prove the volume unmounted (no mount
// lock, and the removal rule saw its last unmount recorded, by its host or by
// an operator's use force-remove), so a client still holding the image is
// stale: if op finds one (ErrInUse) and the backend can fence, the holders
// are fenced and op runs once more. Without this, a Ceph volume whose host
// died with it mapped could never be removed.
func (t *Ops) fencingStale(ctx context.Context, b any, sv storage.Volume, op func() error) error {
	err := op()
	lb, ok := b.(lockBreaker)
	if err == nil || !ok || !errors.Is(err, storage.ErrInUse) {
		return err
	}
	reason := "removed by " + t.By + ": no host holds its mount lock and its last unmount is recorded"
	if berr := lb.BreakLock(ctx, sv, reason); berr != nil {
		return errors.Join(err, fmt.Errorf("fencing the image's stale holders: %w", berr))
	}
	return op()
}
