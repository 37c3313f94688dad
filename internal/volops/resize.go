package volops

import (
	"context"
	"errors"
	"fmt"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
)

// ResizeLocked grows locked (the record read under the operation lock h
// holds) to size and drops the lock. A host that has the volume mounted
// grows its filesystem online (it learns the new size from its runtime
// poll); an unmounted volume's filesystem grows here where the backend can,
// else at its next mount. An image that grew is recorded at its new size
// even when its filesystem did not (storage.ErrNotGrown, returned with the
// grown record): images never shrink back, and asking for the same size
// again finishes the grow. It returns the revision the caller waits for,
// on failure too.
func (t *Ops) ResizeLocked(ctx context.Context, locked config.Volume, size string, h store.Holder) (config.Volume, int64, error) {
	ref := locked.Ref()
	fail := func(err error) (config.Volume, int64, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		rev, _ := t.Store.ReleaseOp(rctx, ref, h)
		return config.Volume{}, rev, err
	}
	b, sv, err := t.crud(&locked)
	if err == nil && b == nil {
		err = fmt.Errorf("volume %s is mount-only: %w", ref, config.ErrInvalid)
	}
	if err != nil {
		return fail(err)
	}
	grown, n, err := locked.Grow(size, t.now())
	if err != nil {
		return fail(err)
	}
	// With the operation lock held no new mount lock can appear, so this
	// read says for the whole resize whether a host has (or is making) a
	// mount: then its filesystem is that host's to grow, never offline here.
	switch _, err := t.Store.GetUse(ctx, ref); {
	case err == nil:
		sv.Mounted = true
	case !errors.Is(err, config.ErrNotFound):
		return fail(err)
	}
	// Not cancelled with the request: a filesystem check or grow killed
	// half-way is worse than a late answer.
	err = t.Call(context.WithoutCancel(ctx), locked.Backends.CRUD, "resize", func(bctx context.Context) error {
		return b.Resize(bctx, sv, n)
	})
	notGrown := errors.Is(err, storage.ErrNotGrown)
	if err != nil && !notGrown {
		return fail(fmt.Errorf("resize volume %s to %s: %w", ref, size, err))
	}
	growErr := err
	faultpoint.Hit(ctx, "resize.grown", ref.String())
	rev, err := t.Store.FinishResize(context.WithoutCancel(ctx), grown, h)
	if err != nil {
		// The lock may be on a long-lived lease: drop it, or mounts and a
		// retry stay refused (a no-op if the commit did go through).
		return fail(err)
	}
	if notGrown {
		return grown, rev, fmt.Errorf("resize volume %s: its image and record are now %s, but its filesystem was not grown "+
			"(it grows at the next mount, or run the same resize again): %w", ref, grown.Create.Size, growErr)
	}
	return grown, rev, nil
}
