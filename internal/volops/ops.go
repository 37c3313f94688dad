// Package volops runs every multi-step volume operation — create, copy,
// resize, snapshot, prune, remove, restore and purge — for volmaster and
// volsupervisor alike: the record, the volume's operation lock (so a
// snapshot and a remove of the same volume never overlap), the backend call
// (Ops.Call: under the timeout, with metrics), and the rollback that leaves
// no record without an image nor an image without a record. Each step that
// changes etcd can carry a guard (a volsupervisor's leadership) so a deposed
// leader cannot act. The callers decode, call and log; nothing here logs.
package volops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// cleanupTimeout bounds the undoing of a half-done operation.
const cleanupTimeout = time.Minute

// Ops runs volume operations against the store and the backends.
type Ops struct {
	Store *store.Store
	// Backends maps a backend name to its Snapshotter.
	Backends map[string]storage.Snapshotter
	// CRUD maps a backend name to its CRUD backend (for Remove).
	CRUD map[string]storage.CRUD
	// By names who acts, in snapshot records.
	By string
	// Daemon names the daemon these operations run in ("volmaster"), for
	// the error of a backend it does not have: "backend ceph is not
	// configured on this volmaster".
	Daemon string
	// Timeout bounds each backend call.
	Timeout time.Duration
	Now     func() time.Time
	// Observe, if set, is told about every backend call (for metrics).
	Observe func(backend, op string, start time.Time, err error)
}

// Call runs one backend call f under the timeout, tells Observe about it
// (as op on backend), and gives a call cut off by its timeout the kind
// config.ErrUnavailable: the backend did not answer. Every backend call of a
// volume operation goes through it, in volmaster and volsupervisor alike.
func (t *Ops) Call(ctx context.Context, backend, op string, f func(context.Context) error) error {
	bctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	start := time.Now()
	err := f(bctx)
	t.observe(backend, op, start, err)
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, config.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", err, config.ErrUnavailable)
	}
	return err
}

func (t *Ops) observe(backend, op string, start time.Time, err error) {
	if t.Observe != nil {
		t.Observe(backend, op, start, err)
	}
}

func (t *Ops) daemon() string {
	if t.Daemon != "" {
		return t.Daemon
	}
	return "host"
}

func (t *Ops) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// crud returns v's CRUD backend and its storage view; nil for a
// mount-only volume.
func (t *Ops) crud(v *config.Volume) (storage.CRUD, storage.Volume, error) {
	if v.Backends.CRUD == "" {
		return nil, storage.Volume{}, nil
	}
	b, ok := t.CRUD[v.Backends.CRUD]
	if !ok {
		return nil, storage.Volume{}, fmt.Errorf("backend %s is not configured on this %s: %w", v.Backends.CRUD, t.daemon(), config.ErrUnavailable)
	}
	sv, err := storage.FromConfig(v)
	if err != nil {
		return nil, storage.Volume{}, err
	}
	return b, sv, nil
}

func (t *Ops) backend(v *config.Volume) (storage.Snapshotter, storage.Volume, error) {
	if v.Backends.Snapshot == "" {
		return nil, storage.Volume{}, fmt.Errorf("volume %s: backend %s cannot take snapshots: %w", v.Ref(), v.Backends.Mount, config.ErrInvalid)
	}
	b, ok := t.Backends[v.Backends.Snapshot]
	if !ok {
		return nil, storage.Volume{}, fmt.Errorf("snapshot backend %s is not configured here: %w", v.Backends.Snapshot, config.ErrUnavailable)
	}
	sv, err := storage.FromConfig(v)
	return b, sv, err
}

func (t *Ops) release(ctx context.Context, ref config.VolumeRef, h store.Holder) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = t.Store.ReleaseOp(cctx, ref, h)
}
