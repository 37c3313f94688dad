package lock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// volcli use force-remove breaks the lock and records the unmount; after a
// host's death (no lock any more) it records the unmount only; with nothing
// to do it is ErrNotFound.
func TestForceRelease(t *testing.T) {
	locks, ref := setup(t)
	ctx := context.Background()
	if _, err := locks.ForceRelease(ctx, ref, time.Now()); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("ForceRelease of a volume never mounted = %v, want ErrNotFound", err)
	}
	host, _ := locks.Grant(ctx, "h1", "", 30)
	if _, err := locks.Acquire(ctx, ref, config.MountRequest{Hostname: "h1", Lease: host.ID, MountID: "m"}); err != nil {
		t.Fatal(err)
	}
	out, err := locks.ForceRelease(ctx, ref, time.Now())
	if err != nil || out.Lock == nil || out.Lock.Hostname != "h1" || out.Usage.Unrecorded() || out.Usage.Host != "h1" {
		t.Fatalf("ForceRelease of a locked volume = %+v, %v", out, err)
	}
	if u, _, err := locks.get(ctx, locks.keys.Use(ref)); err != nil || u != nil {
		t.Errorf("lock after ForceRelease: %+v, %v", u, err)
	}
	if _, err := locks.ForceRelease(ctx, ref, time.Now()); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("second ForceRelease = %v, want ErrNotFound", err)
	}
	// The host mounts again and dies: its lease expires, the lock goes, the
	// mount has no recorded unmount.
	host2, _ := locks.Grant(ctx, "h2", "", 30)
	if _, err := locks.Acquire(ctx, ref, config.MountRequest{Hostname: "h2", Lease: host2.ID, MountID: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := locks.Revoke(ctx, host2.ID); err != nil {
		t.Fatal(err)
	}
	if u := usageOf(t, locks, ref); u == nil || !u.Unrecorded() || u.Host != "h2" {
		t.Fatalf("usage after the host died = %+v", u)
	}
	at := time.Now().Add(time.Hour)
	out, err = locks.ForceRelease(ctx, ref, at)
	if err != nil || out.Lock != nil || !out.Usage.LastUnmounted.Equal(at.UTC()) || out.Usage.Host != "h2" {
		t.Fatalf("ForceRelease after the host died = %+v, %v", out, err)
	}
	if u := usageOf(t, locks, ref); u == nil || u.Unrecorded() {
		t.Fatalf("usage after ForceRelease = %+v", u)
	}
	if _, err := locks.ForceRelease(ctx, config.VolumeRef{Policy: "p", Name: "none"}, time.Now()); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("ForceRelease of a missing volume = %v", err)
	}
}

func usageOf(t *testing.T, m *Manager, ref config.VolumeRef) *config.Usage {
	t.Helper()
	resp, err := m.cli.Get(context.Background(), m.keys.Usage(ref))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	u, err := config.DecodeUsage(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return &u
}
