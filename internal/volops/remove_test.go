package volops

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/lock"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

type env struct {
	st    *store.Store
	lb    *local.Backend
	locks *lock.Manager
	ops   *Ops
	h     store.Holder
}

func setup(t *testing.T) *env {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	lb, err := local.New(local.Config{DataDir: t.TempDir(), MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, keys, 5*time.Second)
	if err := st.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, lb: lb, locks: lock.New(cli, keys, 5*time.Second),
		ops: &Ops{Store: st, CRUD: map[string]storage.CRUD{config.BackendLocal: lb}, Timeout: time.Minute, Now: time.Now},
		h:   store.Holder{Lease: lease.ID, Owner: "test"}}
}

func (e *env) volume(t *testing.T, name, fields string) config.VolumeRef {
	t.Helper()
	ctx := context.Background()
	p, err := config.DecodePolicy("p", []byte(`{"backend":"local","create":{"size":"8MB"}`+fields+`}`))
	if err != nil {
		t.Fatal(err)
	}
	ref := config.VolumeRef{Policy: "p", Name: name}
	v, err := config.NewVolume(ref, p, 1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateVolume(ctx, v, e.h); err != nil {
		t.Fatal(err)
	}
	sv, _ := storage.FromConfig(&v)
	if err := e.lb.Create(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ReleaseOp(ctx, ref, e.h); err != nil {
		t.Fatal(err)
	}
	return ref
}

func (e *env) exists(t *testing.T, ref config.VolumeRef) bool {
	t.Helper()
	_, err := e.st.GetVolume(context.Background(), ref)
	if err != nil && !errors.Is(err, config.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// A user's remove: refused while mounted and while the last mount has no
// recorded unmount; allowed at once after a release or a recorded unmount.
func TestManualRemove(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ref := e.volume(t, "v", "")
	host, _ := e.locks.Grant(ctx, "node7", "", 30)
	req := config.MountRequest{Hostname: "node7", Lease: host.ID, MountID: "m"}
	if _, err := e.locks.Acquire(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Remove(ctx, ref, Manual, e.h); !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), `mounted on host "node7"`) {
		t.Fatalf("remove while mounted = %v", err)
	}
	if err := e.locks.Revoke(ctx, host.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.ops.Remove(ctx, ref, Manual, e.h)
	if !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "in use until proven unmounted") ||
		!strings.Contains(err.Error(), "volcli use force-remove p/v") {
		t.Fatalf("remove after the host died = %v", err)
	}
	if d, _ := e.st.Dump(ctx); d[e.st.Keys().OpLock(ref)] != "" {
		t.Error("a refused remove left an operation lock")
	}
	if _, err := e.locks.ForceRelease(ctx, ref, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Remove(ctx, ref, Manual, e.h); err != nil {
		t.Fatalf("remove after the recorded unmount: %v", err)
	}
	if e.exists(t, ref) {
		t.Error("volume still there")
	}
}

// volsupervisor's removal waits for the grace after the unmount, and does
// not act on a check made before a mount and unmount that came in between.
func TestCollectRemove(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ref := e.volume(t, "eph", `,"ephemeral":true`)
	host, _ := e.locks.Grant(ctx, "node7", "", 30)
	req := config.MountRequest{Hostname: "node7", Lease: host.ID, MountID: "m"}
	if _, err := e.locks.Acquire(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.locks.Release(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	const grace = time.Minute
	if _, err := e.ops.Remove(ctx, ref, Collect(grace), e.h); !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "twice the lease TTL") {
		t.Fatalf("removal within the grace = %v", err)
	}
	later := *e.ops
	later.Now = func() time.Time { return time.Now().Add(grace) }
	// A mount and unmount while the (stale) check runs: the removal must
	// not go ahead on it.
	stale := func(v *config.Volume, u *config.Usage, now time.Time) error {
		if err := Collect(grace)(v, u, now); err != nil {
			return err
		}
		if _, err := e.locks.Acquire(ctx, ref, req); err != nil {
			t.Fatal(err)
		}
		if _, err := e.locks.Release(ctx, ref, req); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	if _, err := later.Remove(ctx, ref, stale, e.h); !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "meanwhile") {
		t.Fatalf("removal on a stale check = %v", err)
	}
	if !e.exists(t, ref) {
		t.Fatal("removed on a stale check")
	}
	if _, err := later.Remove(ctx, ref, Collect(grace), e.h); err != nil {
		t.Fatalf("removal after the grace: %v", err)
	}
	if e.exists(t, ref) {
		t.Error("volume still there")
	}
}
