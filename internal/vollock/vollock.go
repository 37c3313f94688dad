// Package vollock serialises operations on one volume within a process. The
// local and Ceph backends need it (two concurrent Mounts of a volume must not
// attach or map its device twice), and so does volplugin (a mount, an
// unmount and a relock of one volume must not interleave), so it lives here
// once.
package vollock

import (
	"context"
	"sync"

	"github.com/volplugin/volplugin/storage"
)

// Locker serialises operations on the same volume within this process so
// that, say, two concurrent Mounts cannot attach two loop devices. Different
// volumes proceed in parallel. The zero value is ready to use.
type Locker struct {
	mu sync.Mutex
	m  map[storage.ID]*volLock
}

type volLock struct {
	ch   chan struct{} // a one-slot semaphore, so waiting can honour ctx
	refs int           // holders and waiters; the entry is dropped at zero
}

// Lock locks volume policy/name, waiting until it is free or ctx is done.
func (l *Locker) Lock(ctx context.Context, policy, name string) (unlock func(), err error) {
	id := storage.ID{Policy: policy, Name: name}
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[storage.ID]*volLock)
	}
	e := l.m[id]
	if e == nil {
		e = &volLock{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-e.ch
				release()
			})
		}, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Hold is Lock without a deadline, for work that must not be given up
// half-way once asked for (volplugin's steps on one volume); it waits as
// long as the holder keeps the lock.
func (l *Locker) Hold(policy, name string) (unlock func()) {
	unlock, _ = l.Lock(context.Background(), policy, name) // fails only when its ctx ends
	return unlock
}

// LockPair locks two volumes in a fixed order, so that two calls locking the
// same pair the other way round cannot deadlock.
func (l *Locker) LockPair(ctx context.Context, a, b storage.ID) (unlock func(), err error) {
	if a == b {
		return l.Lock(ctx, a.Policy, a.Name)
	}
	if b.Policy < a.Policy || (b.Policy == a.Policy && b.Name < a.Name) {
		a, b = b, a
	}
	ua, err := l.Lock(ctx, a.Policy, a.Name)
	if err != nil {
		return nil, err
	}
	ub, err := l.Lock(ctx, b.Policy, b.Name)
	if err != nil {
		ua()
		return nil, err
	}
	return func() { ub(); ua() }, nil
}
