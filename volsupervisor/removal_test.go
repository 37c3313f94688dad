package volsupervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/volops"
	"github.com/volplugin/volplugin/lock"
	"github.com/volplugin/volplugin/storage"
)

// fakeClock is the supervisor's clock (Config.Now) in these tests; it
// counts its readings, and each round reads it, so a test can wait for
// rounds to have happened instead of sleeping.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	reads int
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// waitReads waits until the clock has been read n more times: at least n/3
// rounds (a round reads it at most three times when it removes nothing).
func (c *fakeClock) waitReads(t *testing.T, n int) {
	t.Helper()
	from := c.Reads()
	waitFor(t, "more rounds", 30*time.Second, func() bool { return c.Reads() >= from+n })
}

// supervisorAt runs a supervisor on clock, with a fast tick.
func (e *env) supervisorAt(t *testing.T, name string, clock *fakeClock) *Supervisor {
	t.Helper()
	s, err := New(Config{Client: e.cli, Keys: e.keys, Name: name, Log: quiet(), Tick: 10 * time.Millisecond, Now: clock.Now,
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: e.lb},
		Backends:     map[string]storage.CRUD{config.BackendLocal: e.lb}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (e *env) exists(t *testing.T, ref config.VolumeRef) bool {
	t.Helper()
	_, err := e.st.GetVolume(context.Background(), ref)
	if err != nil && !errors.Is(err, config.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// Invariant 4: a volume whose host died with it mounted (the lock went with
// the lease, no unmount was recorded) is in use until proven unmounted. It is
// never removed, however long nothing holds it; the status lists it with its
// host. Once an operator records the unmount (volcli use force-remove) it
// goes after twice the TTL without a lock, not before.
func TestUnprovenVolumeKeptUntilOperatorRecordsUnmount(t *testing.T) {
	const ttl = 5
	grace := config.RemovalGrace(ttl)
	e := setup(t, ttl)
	ctx := context.Background()
	eph := e.volumeOf(t, "eph", `"ephemeral":true`)
	recl := e.volumeOf(t, "recl", `"reclaim":{"unused-for":"1m","enabled":true}`)
	locks := lock.New(e.cli, e.keys, 5*time.Second)
	host, err := locks.Grant(ctx, "node7", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []config.VolumeRef{eph, recl} {
		if _, err := locks.Acquire(ctx, ref, config.MountRequest{Hostname: "node7", Lease: host.ID, MountID: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	// The host is killed: its lease expires without any release.
	if err := locks.Revoke(ctx, host.ID); err != nil {
		t.Fatal(err)
	}
	clock := newClock(time.Now().Add(24 * time.Hour)) // far past the grace and unused-for
	s := e.supervisorAt(t, "s1", clock)
	waitFor(t, "both volumes listed as in use until proven unmounted", 20*time.Second, func() bool {
		return len(s.Status().Unproven) == 2
	})
	for i, want := range []config.VolumeRef{eph, recl} {
		if u := s.Status().Unproven[i]; u.Volume != want || u.Host != "node7" || u.LastMounted.IsZero() {
			t.Errorf("unproven[%d] = %+v, want %s on node7", i, u, want)
		}
	}
	clock.waitReads(t, 150)
	clock.Add(30 * 24 * time.Hour)
	clock.waitReads(t, 150)
	if !e.exists(t, eph) || !e.exists(t, recl) || s.Status().Removed != 0 {
		t.Fatalf("a volume whose last mount has no recorded unmount was removed (status %+v)", s.Status())
	}
	// A manual remove is refused too, naming the host and the command.
	ops := &volops.Ops{Store: e.st, CRUD: map[string]storage.CRUD{config.BackendLocal: e.lb}, Timeout: time.Minute, Now: clock.Now}
	lease, _ := e.cli.Grant(ctx, 30)
	if _, err := ops.Remove(ctx, eph, volops.Manual, store.Holder{Lease: lease.ID, Owner: "test"}); !errors.Is(err, config.ErrInUse) ||
		!strings.Contains(err.Error(), `"node7"`) || !strings.Contains(err.Error(), "volcli use force-remove p/eph") {
		t.Fatalf("manual remove = %v", err)
	}

	// The operator checked node7 and records the unmount of eph.
	if _, err := lock.New(e.cli, e.keys, 5*time.Second).ForceRelease(ctx, eph, clock.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "eph to leave the unproven list", 20*time.Second, func() bool {
		st := s.Status()
		return len(st.Unproven) == 1 && st.Unproven[0].Volume == recl
	})
	clock.Add(grace - time.Second)
	clock.waitReads(t, 150)
	if !e.exists(t, eph) {
		t.Fatal("removed before the grace (twice the TTL) since the recorded unmount")
	}
	clock.Add(time.Second)
	waitFor(t, "eph to be removed once the grace has passed", 20*time.Second, func() bool { return !e.exists(t, eph) })
	if ok, _ := e.lb.Exists(ctx, storage.Volume{Policy: eph.Policy, Name: eph.Name}); ok {
		t.Error("image of the removed volume is still there")
	}
	clock.waitReads(t, 150)
	if !e.exists(t, recl) {
		t.Fatal("recl went without a recorded unmount")
	}
	waitFor(t, "the removal count", 10*time.Second, func() bool { return s.Status().Removed == 1 })
}

// A host that still has the volume mounted takes its lock again after an
// operator recorded the unmount by mistake: the new mount has no recorded
// unmount, so nothing removes it when the grace would have passed.
func TestRemountAfterRecordedUnmountIsKept(t *testing.T) {
	const ttl = 5
	e := setup(t, ttl)
	ctx := context.Background()
	eph := e.volumeOf(t, "eph", `"ephemeral":true`)
	locks := lock.New(e.cli, e.keys, 5*time.Second)
	host, _ := locks.Grant(ctx, "node7", "", 30)
	req := config.MountRequest{Hostname: "node7", Lease: host.ID, MountID: "m"}
	if _, err := locks.Acquire(ctx, eph, req); err != nil {
		t.Fatal(err)
	}
	clock := newClock(time.Now())
	if _, err := lock.New(e.cli, e.keys, 5*time.Second).ForceRelease(ctx, eph, clock.Now()); err != nil {
		t.Fatal(err)
	}
	// The host is alive: it takes its lock again (on a new lease), and then
	// dies.
	host2, _ := locks.Grant(ctx, "node7", "", 30)
	req.Lease = host2.ID
	if _, err := locks.Acquire(ctx, eph, req); err != nil {
		t.Fatal(err)
	}
	if err := locks.Revoke(ctx, host2.ID); err != nil {
		t.Fatal(err)
	}
	s := e.supervisorAt(t, "s1", clock)
	clock.Add(time.Hour)
	waitFor(t, "eph listed as in use until proven unmounted", 20*time.Second, func() bool { return len(s.Status().Unproven) == 1 })
	clock.waitReads(t, 150)
	if !e.exists(t, eph) {
		t.Fatal("a volume mounted again after the recorded unmount was removed")
	}
}
