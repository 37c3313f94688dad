package volmaster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// recoverEvery is how often volmaster looks for operations cut short while
// its read cache has seen intents (operations in flight): then a look is one
// etcd read, and nothing is written unless something is recovered. With no
// intent, and while the cache is out of sync with etcd, it does not look.
const recoverEvery = time.Second

// recoverLoop recovers, until ctx ends, the operations whose holder died
// half-way (kill -9 of a volmaster, a volsupervisor leader's crash): their
// operation lock expired with the holder's lease and left the intent behind
// (store.Intent). Any number of volmasters may run it: TakeOver lets one win.
func (s *Server) recoverLoop(ctx context.Context) {
	t := time.NewTicker(recoverEvery)
	defer t.Stop()
	for {
		if s.cache.Intents() > 0 {
			if _, err := s.RecoverInterrupted(ctx); err != nil && ctx.Err() == nil {
				s.log.WithError(err).Warn("recovering operations cut short")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RecoverInterrupted finishes or undoes every operation cut short whose lock
// has expired, and returns how many it recovered:
//
//   - create: an image that exists is kept and the volume is complete; with
//     no image the record is rolled back. A copy from a snapshot is rolled
//     back either way (its image may be a partial copy).
//   - remove: with the image gone the record is removed too; with the image
//     still there the remove is undone (the volume stays, as it was).
//   - snapshot: the backend snapshot, which has no record, is removed.
//   - prune: the snapshot is removed from the backend and its record deleted.
//   - resize: the grow is done again (it is idempotent) and the record set to
//     the new size; if that fails the record stays at the old size.
//   - anything else (copy's source lock): the lock is dropped.
//
// Until an operation is recovered no mount lock is granted on its volume
// and no other operation begins on it.
func (s *Server) RecoverInterrupted(ctx context.Context) (int, error) {
	list, err := s.store.ListInterrupted(ctx)
	if err != nil || len(list) == 0 {
		return 0, err
	}
	h, err := s.holder(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	now := time.Now()
	for _, it := range list {
		s.recoverMu.Lock()
		b := s.recoverBackoff[it.Ref]
		s.recoverMu.Unlock()
		if now.Before(b.next) {
			continue
		}
		done, err := s.recoverOne(ctx, it, h)
		s.recoverMu.Lock()
		if err != nil {
			// A failing recovery is tried again after 1 s, doubling to 1 min.
			b.wait = min(max(2*b.wait, recoverEvery), time.Minute)
			b.next = now.Add(b.wait)
			s.recoverBackoff[it.Ref] = b
		} else {
			delete(s.recoverBackoff, it.Ref)
		}
		s.recoverMu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// backoff is when a failed recovery is tried again.
type backoff struct {
	next time.Time
	wait time.Duration
}

// recoverOne recovers one operation cut short; done is false when another
// volmaster took it over first (or it changed meanwhile).
func (s *Server) recoverOne(ctx context.Context, it store.Interrupted, h store.Holder) (done bool, err error) {
	log := s.log.WithFields(logrus.Fields{"volume": it.Ref.String(), "op": it.Intent.Op,
		"by": it.Intent.Owner, "since": it.Intent.Since.Format(time.RFC3339)})
	v, found, err := s.store.TakeOver(ctx, it, h)
	if errors.Is(err, config.ErrInUse) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	outcome, err := s.recoverLocked(ctx, it, v, found, h)
	if err != nil {
		log.WithError(err).Error("recovering an operation cut short")
		return false, fmt.Errorf("recover the %s of %s: %w", it.Intent.Op, it.Ref, err)
	}
	log.WithField("outcome", outcome).Warn("recovered an operation cut short")
	return true, nil
}

// recoverLocked does the recovery under the lock TakeOver took and drops the
// lock with the intent; it returns what it did.
func (s *Server) recoverLocked(ctx context.Context, it store.Interrupted, v config.Volume, found bool, h store.Holder) (string, error) {
	ref := it.Ref
	release := func(outcome string) (string, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		rev, err := s.store.ReleaseOp(rctx, ref, h)
		if err == nil {
			s.settle(rctx, rev)
		}
		return outcome, err
	}
	// A backend call that fails drops the lock but keeps the intent
	// (retryLater): the recovery is tried again after a backoff.
	retryLater := func() { _, _ = s.store.ReleaseOpKeepIntent(context.WithoutCancel(ctx), ref, h) }
	if !found {
		return release("the volume's record is gone: nothing to do")
	}
	in := it.Intent
	bctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	switch in.Op {
	case "create", "remove", "restore":
		backend, err := s.crud(&v)
		if err != nil {
			retryLater()
			return "", err
		}
		if backend == nil {
			return release("mount-only volume: nothing to undo")
		}
		sv, err := storage.FromConfig(&v)
		if err != nil {
			retryLater()
			return "", err
		}
		exists, err := backend.Exists(bctx, sv)
		if err != nil {
			// Retried next round: the lock expires with our lease if we die.
			retryLater()
			return "", err
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
				retryLater()
				return "", fmt.Errorf("backend %s has no trash to take image %s from: %w", v.Backends.CRUD, in.Handle, config.ErrUnavailable)
			}
			if err := trasher.Restore(bctx, sv, in.Handle); err != nil && !errors.Is(err, storage.ErrExists) {
				retryLater()
				return "", err
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
			if err := backend.Destroy(bctx, sv); err != nil && !errors.Is(err, storage.ErrNotFound) {
				retryLater()
				return "", err
			}
			rev, err := s.store.FinishRemove(context.WithoutCancel(ctx), ref, h)
			if err != nil {
				return "", err
			}
			s.settle(ctx, rev)
			if in.Op == "create" {
				return "create rolled back: record removed", nil
			}
			return "remove finished: the image was gone, the record is removed", nil
		default:
			return release("remove undone: the image is there, the volume stays")
		}
	case "snapshot", "prune":
		if in.Snapshot == "" {
			return release("no snapshot named: lock dropped")
		}
		b, ok := s.ops.Backends[v.Backends.Snapshot]
		if !ok {
			// Another volmaster may have it.
			retryLater()
			return "", fmt.Errorf("snapshot backend %q is not configured on this volmaster: %w", v.Backends.Snapshot, config.ErrUnavailable)
		}
		sv, err := storage.FromConfig(&v)
		if err != nil {
			retryLater()
			return "", err
		}
		name := in.Snapshot
		if in.BackendSnapshot != "" {
			name = in.BackendSnapshot
		}
		if err := b.RemoveSnapshot(bctx, sv, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			retryLater()
			return "", err
		}
		if in.Op == "snapshot" {
			return release("snapshot " + in.Snapshot + " (never recorded) removed")
		}
		if err := s.store.FinishPrune(context.WithoutCancel(ctx), ref, in.Snapshot, h); err != nil {
			return "", err
		}
		return "prune of " + in.Snapshot + " finished", nil
	case "resize":
		if _, err := s.resizeLocked(ctx, v, in.Size, h); err != nil {
			return "", err
		}
		return "resize to " + in.Size + " finished", nil
	default:
		return release("lock dropped")
	}
}
