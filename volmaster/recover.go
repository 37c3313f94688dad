package volmaster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
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
// lock with the intent (volops.Ops.Recover); it returns what it did.
func (s *Server) recoverLocked(ctx context.Context, it store.Interrupted, v config.Volume, found bool, h store.Holder) (string, error) {
	outcome, rev, err := s.volOps().Recover(ctx, it, v, found, h)
	if rev > 0 {
		s.settle(context.WithoutCancel(ctx), rev)
	}
	return outcome, err
}
