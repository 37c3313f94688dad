package volops

import (
	"context"
	"errors"
	"fmt"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// Recover finishes or undoes the operation it names, cut short when its
// holder died, under the lock h took over (store.TakeOver; v is the record
// read then, found false if it is gone), and drops the lock with the
// intent. It returns what it did and the revision the caller waits for. A
// backend call that fails drops the lock but keeps the intent, so the
// recovery is tried again later.
func (t *Ops) Recover(ctx context.Context, it store.Interrupted, v config.Volume, found bool, h store.Holder) (string, int64, error) {
	ref := it.Ref
	release := func(outcome string) (string, int64, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		rev, err := t.Store.ReleaseOp(rctx, ref, h)
		if err != nil {
			return outcome, 0, err
		}
		return outcome, rev, nil
	}
	retryLater := func(err error) (string, int64, error) {
		_, _ = t.Store.ReleaseOpKeepIntent(context.WithoutCancel(ctx), ref, h)
		return "", 0, err
	}
	if !found {
		return release("the volume's record is gone: nothing to do")
	}
	in := it.Intent
	switch in.Op {
	case "create", "remove", "restore":
		backend, sv, err := t.crud(&v)
		if err != nil {
			return retryLater(err)
		}
		if backend == nil {
			return release("mount-only volume: nothing to undo")
		}
		var exists bool
		err = t.Call(ctx, v.Backends.CRUD, "exists", func(bctx context.Context) (err error) {
			exists, err = backend.Exists(bctx, sv)
			return err
		})
		if err != nil {
			// Retried next round: the lock expires with our lease if we die.
			return retryLater(err)
		}
		trasher, _ := backend.(storage.Trasher)
		switch {
		case in.Op == "restore" && exists:
			return release("restore finished: the image is back")
		case in.Op == "restore" || (in.Op == "remove" && in.Handle != ""):
			// The image is in the backend's trash under the handle: a
			// restore is finished, a remove undone (its records never
			// moved to the trash), by taking it back.
			if trasher == nil {
				return retryLater(fmt.Errorf("backend %s has no trash to take image %s from: %w", v.Backends.CRUD, in.Handle, config.ErrUnavailable))
			}
			err := t.Call(ctx, v.Backends.CRUD, "restore", func(bctx context.Context) error { return trasher.Restore(bctx, sv, in.Handle) })
			if err != nil && !errors.Is(err, storage.ErrExists) {
				return retryLater(err)
			}
			if in.Op == "restore" {
				return release("restore finished: the image taken back from the trash")
			}
			return release("remove undone: the image taken back from the trash, the volume stays")
		case in.Op == "create" && exists && in.From == "":
			return release("create finished: the image exists")
		case in.Op == "create" && exists:
			// A copy: its image may be partial, so it goes too.
			fallthrough
		case !exists:
			// The image, or what a destroy cut short left of it (the local
			// backend's snapshot files), goes with the record.
			err := t.Call(ctx, v.Backends.CRUD, "destroy", func(bctx context.Context) error { return backend.Destroy(bctx, sv) })
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return retryLater(err)
			}
			rev, err := t.Store.FinishRemove(context.WithoutCancel(ctx), ref, h)
			if err != nil {
				return "", 0, err
			}
			if in.Op == "create" {
				return "create rolled back: record removed", rev, nil
			}
			return "remove finished: the image was gone, the record is removed", rev, nil
		default:
			return release("remove undone: the image is there, the volume stays")
		}
	case "snapshot", "prune":
		if in.Snapshot == "" {
			return release("no snapshot named: lock dropped")
		}
		b, ok := t.Backends[v.Backends.Snapshot]
		if !ok {
			// Another volmaster may have it.
			return retryLater(fmt.Errorf("snapshot backend %q is not configured on this %s: %w", v.Backends.Snapshot, t.daemon(), config.ErrUnavailable))
		}
		sv, err := storage.FromConfig(&v)
		if err != nil {
			return retryLater(err)
		}
		name := in.Snapshot
		if in.BackendSnapshot != "" {
			name = in.BackendSnapshot
		}
		err = t.Call(ctx, v.Backends.Snapshot, "remove-snapshot", func(bctx context.Context) error { return b.RemoveSnapshot(bctx, sv, name) })
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return retryLater(err)
		}
		if in.Op == "snapshot" {
			return release("snapshot " + in.Snapshot + " (never recorded) removed")
		}
		if err := t.Store.FinishPrune(context.WithoutCancel(ctx), ref, in.Snapshot, h); err != nil {
			return "", 0, err
		}
		return "prune of " + in.Snapshot + " finished", 0, nil
	case "resize":
		_, rev, err := t.ResizeLocked(ctx, v, in.Size, h)
		if err != nil {
			return "", rev, err
		}
		return "resize to " + in.Size + " finished", rev, nil
	default:
		return release("lock dropped")
	}
}
