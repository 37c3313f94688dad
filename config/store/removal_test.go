package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/lock"
)

func createVolume(t *testing.T, s *Store, ref config.VolumeRef) {
	t.Helper()
	ctx := context.Background()
	v, err := config.NewVolume(ref, policy(t, ref.Policy, `{"backend":"local","create":{"size":"10MB"}}`), 1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	if _, err := s.CreateVolume(ctx, v, h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseOp(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
}

// A remove checked against one usage record does not go ahead once the
// record changed (a mount and unmount, or a host's death, in between): it is
// ErrInUse, never ErrNotLeader, so a volsupervisor does not step down.
func TestBeginRemoveChecksUsage(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	createVolume(t, s, ref)
	u, rev, err := s.GetUsage(ctx, ref)
	if u != nil || rev != 0 || err != nil {
		t.Fatalf("usage of a new volume = %+v, %d, %v", u, rev, err)
	}
	locks := lock.New(s.Client(), s.Keys(), 5*time.Second)
	host, _ := locks.Grant(ctx, "h1", "", 30)
	req := config.MountRequest{Hostname: "h1", Lease: host.ID, MountID: "m"}
	if _, err := locks.Acquire(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	if _, err := locks.Release(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	// An always-true guard, as a leader's.
	guard := clientv3.Compare(clientv3.CreateRevision(s.Keys().Schema()), ">", 0)
	if _, err := s.BeginRemove(ctx, ref, h, 0, guard); !errors.Is(err, config.ErrInUse) || errors.Is(err, ErrNotLeader) ||
		!strings.Contains(err.Error(), "mounted or unmounted meanwhile") {
		t.Fatalf("BeginRemove with a stale usage revision = %v", err)
	}
	u, rev, err = s.GetUsage(ctx, ref)
	if err != nil || u == nil || u.Unrecorded() || u.Host != "h1" {
		t.Fatalf("usage after mount and unmount = %+v, %v", u, err)
	}
	if _, err := s.BeginRemove(ctx, ref, h, rev, guard); err != nil {
		t.Fatalf("BeginRemove with the current usage revision: %v", err)
	}
	if _, err := s.FinishRemove(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := s.GetUsage(ctx, ref); u != nil {
		t.Errorf("usage record left after remove: %+v", u)
	}
}
