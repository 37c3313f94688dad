package lock

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

func setup(t *testing.T) (*Manager, config.VolumeRef) {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	if _, err := cli.Put(context.Background(), keys.Volume(ref), `{"policy":"p","name":"v"}`); err != nil {
		t.Fatal(err)
	}
	return New(cli, keys, 5*time.Second), ref
}

func TestMountLockRefCountsAndExcludesOtherHosts(t *testing.T) {
	m, ref := setup(t)
	ctx := context.Background()
	a, err := m.Grant(ctx, "hostA", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Grant(ctx, "hostB", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	reqA := func(id string) config.MountRequest {
		return config.MountRequest{Hostname: "hostA", Lease: a.ID, MountID: id}
	}
	if _, err := m.Acquire(ctx, ref, reqA("m1")); err != nil {
		t.Fatal(err)
	}
	u, err := m.Acquire(ctx, ref, reqA("m2"))
	if err != nil || !reflect.DeepEqual(u.MountIDs, []string{"m1", "m2"}) {
		t.Fatalf("second mount = %+v, %v", u, err)
	}
	// The same ID twice (docker cp) is counted once.
	if u, _ := m.Acquire(ctx, ref, reqA("m2")); len(u.MountIDs) != 2 {
		t.Fatalf("repeated ID counted twice: %v", u.MountIDs)
	}
	_, err = m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostB", Lease: b.ID, MountID: "x"})
	if !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "hostA") {
		t.Fatalf("other host's mount = %v, want ErrInUse naming hostA", err)
	}
	if _, err := m.Release(ctx, ref, config.MountRequest{Hostname: "hostB", MountID: "m1"}); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("other host's release = %v", err)
	}
	if rest, err := m.Release(ctx, ref, reqA("m1")); err != nil || !reflect.DeepEqual(rest, []string{"m2"}) {
		t.Fatalf("release m1 = %v, %v", rest, err)
	}
	if rest, err := m.Release(ctx, ref, reqA("m2")); err != nil || len(rest) != 0 {
		t.Fatalf("release m2 = %v, %v", rest, err)
	}
	if rest, err := m.Release(ctx, ref, reqA("m2")); err != nil || len(rest) != 0 {
		t.Fatalf("second release = %v, %v (should be a no-op)", rest, err)
	}
	if _, err := m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostB", Lease: b.ID, MountID: "x"}); err != nil {
		t.Fatalf("hostB after hostA released: %v", err)
	}
}

func TestLeaseExpiryFreesLocks(t *testing.T) {
	m, ref := setup(t)
	ctx := context.Background()
	a, err := m.Grant(ctx, "hostA", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostA", Lease: a.ID, MountID: "m"}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := m.KeepAlive(ctx, a.ID); err != nil || ttl < 1 {
		t.Fatalf("KeepAlive = %d, %v", ttl, err)
	}
	b, _ := m.Grant(ctx, "hostB", "", 30)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostB", Lease: b.ID, MountID: "x"})
		if err == nil {
			break
		}
		if !errors.Is(err, config.ErrInUse) || time.Now().After(deadline) {
			t.Fatalf("hostB never got the lock after hostA's lease expired: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval while the lease runs out
	}
	if _, err := m.KeepAlive(ctx, a.ID); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("KeepAlive of an expired lease = %v, want ErrNotFound", err)
	}
	if _, err := m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostA", Lease: a.ID, MountID: "m"}); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("hostA with its dead lease = %v", err)
	}
}

func TestAcquireRefusesMissingOrBusyVolumeAndBadInput(t *testing.T) {
	m, ref := setup(t)
	ctx := context.Background()
	a, _ := m.Grant(ctx, "hostA", "", 30)
	missing := config.VolumeRef{Policy: "p", Name: "nope"}
	if _, err := m.Acquire(ctx, missing, config.MountRequest{Hostname: "hostA", Lease: a.ID, MountID: "m"}); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("missing volume = %v", err)
	}
	if _, err := m.cli.Put(ctx, m.keys.OpLock(ref), `{"op":"remove"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, ref, config.MountRequest{Hostname: "hostA", Lease: a.ID, MountID: "m"}); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("volume being removed = %v", err)
	}
	for _, req := range []config.MountRequest{
		{Hostname: "", Lease: a.ID, MountID: "m"}, {Hostname: "a/b", Lease: a.ID, MountID: "m"},
		{Hostname: "h", Lease: a.ID, MountID: ""}, {Hostname: "h", Lease: 0, MountID: "m"},
	} {
		if _, err := m.Acquire(ctx, ref, req); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Acquire(%+v) = %v, want ErrInvalid", req, err)
		}
	}
	if _, err := m.Grant(ctx, "bad host", "", 30); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("Grant with a bad host name = %v", err)
	}
}

// Two daemons given one host label (volplugin and volcsi on one machine)
// must not share a lock: each would map and mount the image. The same
// daemon after a restart (same holder, new lease) takes its lock back, and
// a lock from before holders existed goes to whichever daemon relocks it.
func TestMountLockTellsDaemonsOfOneHostApart(t *testing.T) {
	m, ref := setup(t)
	ctx := t.Context()
	plugin, err := m.Grant(ctx, "node1", "volplugin.0a0b0c0d", 30)
	if err != nil {
		t.Fatal(err)
	}
	csi, err := m.Grant(ctx, "node1", "volcsi.0a0b0c0d", 30)
	if err != nil {
		t.Fatal(err)
	}
	byPlugin := config.MountRequest{Hostname: "node1", Holder: "volplugin.0a0b0c0d", Lease: plugin.ID, MountID: "docker1"}
	byCSI := config.MountRequest{Hostname: "node1", Holder: "volcsi.0a0b0c0d", Lease: csi.ID, MountID: "csi1"}
	legacy := config.MountRequest{Hostname: "node1", Lease: plugin.ID, MountID: "old"}
	if _, err := m.Acquire(ctx, ref, byPlugin); err != nil {
		t.Fatal(err)
	}
	for _, req := range []config.MountRequest{byCSI, legacy} {
		_, err := m.Acquire(ctx, ref, req)
		if !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), `host "node1" by volplugin.0a0b0c0d`) {
			t.Fatalf("Acquire by %q on the same host = %v, want ErrInUse naming the holder", req.Holder, err)
		}
		if _, err := m.Release(ctx, ref, req); !errors.Is(err, config.ErrInUse) {
			t.Fatalf("Release by %q of another daemon's lock = %v, want ErrInUse", req.Holder, err)
		}
	}
	// A restart: the same daemon on a new lease moves its lock.
	again, err := m.Grant(ctx, "node1", "volplugin.0a0b0c0d", 30)
	if err != nil {
		t.Fatal(err)
	}
	relock := byPlugin
	relock.Lease = again.ID
	if u, err := m.Acquire(ctx, ref, relock); err != nil || u.Lease != again.ID || u.Holder != byPlugin.Holder {
		t.Fatalf("relock after a restart = %+v, %v", u, err)
	}
	if rest, err := m.Release(ctx, ref, relock); err != nil || len(rest) != 0 {
		t.Fatalf("release = %v, %v", rest, err)
	}
	if _, err := m.Acquire(ctx, ref, byCSI); err != nil {
		t.Fatalf("volcsi after volplugin released: %v", err)
	}
	if _, err := m.Release(ctx, ref, byCSI); err != nil {
		t.Fatal(err)
	}

	// A lock written by a daemon older than holders.
	if _, err := m.Acquire(ctx, ref, legacy); err != nil {
		t.Fatal(err)
	}
	if u, err := m.Acquire(ctx, ref, relock); err != nil || u.Holder != relock.Holder || !reflect.DeepEqual(u.MountIDs, []string{"old", "docker1"}) {
		t.Fatalf("upgraded daemon relocking a lock without holder = %+v, %v", u, err)
	}
	if _, err := m.Acquire(ctx, ref, byCSI); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("volcsi after the upgrade relock = %v, want ErrInUse", err)
	}
	for _, bad := range []string{"a/b", "x y", strings.Repeat("h", 65)} {
		req := byCSI
		req.Holder = bad
		if _, err := m.Acquire(ctx, ref, req); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Acquire with holder %q = %v, want ErrInvalid", bad, err)
		}
		if _, err := m.Grant(ctx, "node1", bad, 30); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Grant with holder %q = %v, want ErrInvalid", bad, err)
		}
	}
}
