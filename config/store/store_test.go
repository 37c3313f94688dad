package store

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("/test")
	s := New(cli, keys, 5*time.Second)
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func policy(t *testing.T, name, doc string) config.Policy {
	t.Helper()
	p, err := config.DecodePolicy(name, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConcurrentUploadsGetDistinctRevisions(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	p := policy(t, "p", `{"backend":"local","create":{"size":"10MB"}}`)
	const n = 20
	revs := make(chan int64, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, _, err := s.PutPolicy(ctx, p, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			revs <- rec.Revision
		}()
	}
	wg.Wait()
	close(revs)
	var got []int
	for r := range revs {
		got = append(got, int(r))
	}
	sort.Ints(got)
	for i, r := range got {
		if r != i+1 {
			t.Fatalf("revisions = %v, want 1..%d", got, n)
		}
	}
	list, err := s.PolicyRevisions(ctx, "p")
	if err != nil || len(list) != n {
		t.Fatalf("PolicyRevisions = %d, %v", len(list), err)
	}
	cur, err := s.GetPolicy(ctx, "p")
	if err != nil || cur.Revision < 1 {
		t.Fatalf("GetPolicy = %+v, %v", cur, err)
	}
}

func TestSchemaNewerIsRefused(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if _, err := s.Client().Put(ctx, s.Keys().Schema(), "99"); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx); err == nil {
		t.Fatal("Init accepted a newer schema")
	}
}

func TestWatchGlobalSeesChanges(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.WatchGlobal(ctx)
	next := func() config.Global {
		select {
		case g := <-ch:
			return g
		case <-time.After(10 * time.Second):
			t.Fatal("no global config from the watch")
			return config.Global{}
		}
	}
	if g := next(); g != config.DefaultGlobal() {
		t.Fatalf("first value = %+v, want defaults", g)
	}
	want := config.Global{TTL: 7, Timeout: 2, Debug: true, MountPath: "/mnt/x"}
	if _, err := s.PutGlobal(ctx, want); err != nil {
		t.Fatal(err)
	}
	if g := next(); g != want {
		t.Fatalf("watched %+v, want %+v", g, want)
	}
	if _, err := s.Client().Delete(ctx, s.Keys().Global()); err != nil {
		t.Fatal(err)
	}
	if g := next(); g != config.DefaultGlobal() {
		t.Fatalf("after delete %+v, want defaults", g)
	}
}

func TestVolumeLifecycleLocks(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	p := policy(t, "p", `{"backend":"local","create":{"size":"10MB"}}`)
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	v, err := config.NewVolume(ref, p, 1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lease, err := s.Client().Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	h := Holder{Lease: lease.ID, Owner: "test"}
	if _, err := s.CreateVolume(ctx, v, h); err != nil {
		t.Fatal(err)
	}
	// While create holds the operation lock, remove is refused clearly.
	if _, err := s.BeginRemove(ctx, ref, h, 0); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("BeginRemove during create = %v, want ErrInUse", err)
	}
	if _, err := s.ForceRemove(ctx, ref); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("ForceRemove during create = %v, want ErrInUse", err)
	}
	if _, err := s.CreateVolume(ctx, v, h); !errors.Is(err, config.ErrExists) {
		t.Fatalf("second CreateVolume = %v, want ErrExists", err)
	}
	if _, err := s.ReleaseOp(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetVolume(ctx, ref)
	if err != nil || got.Create.Size != "10MB" {
		t.Fatalf("GetVolume = %+v, %v", got, err)
	}
	// A lock whose lease expired leaves its intent: the operation cut short
	// is taken over (recovered) before anything else begins.
	if _, err := s.BeginRemove(ctx, ref, h, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRemove(ctx, ref, h); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("FinishRemove after losing the lease = %v, want ErrInUse", err)
	}
	lease2, _ := s.Client().Grant(ctx, 30)
	h2 := Holder{Lease: lease2.ID, Owner: "test2"}
	if _, err := s.BeginRemove(ctx, ref, h2, 0); !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("BeginRemove after the old lease expired = %v, want busy: cut short", err)
	}
	its, err := s.ListInterrupted(ctx)
	if err != nil || len(its) != 1 || its[0].Ref != ref || its[0].Intent.Op != "remove" {
		t.Fatalf("ListInterrupted = %+v, %v; want the remove of %s", its, err, ref)
	}
	if _, found, err := s.TakeOver(ctx, its[0], h2); err != nil || !found {
		t.Fatalf("TakeOver = %v, %v", found, err)
	}
	if _, _, err := s.TakeOver(ctx, its[0], h2); err == nil {
		t.Fatal("a second TakeOver succeeded")
	}
	if its, _ := s.ListInterrupted(ctx); len(its) != 0 {
		t.Fatalf("ListInterrupted under the recovery's lock = %+v", its)
	}
	if _, err := s.FinishRemove(ctx, ref, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVolume(ctx, ref); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("GetVolume after remove = %v", err)
	}
	d, _ := s.Dump(ctx)
	if _, ok := d[s.Keys().Runtime(ref)]; ok {
		t.Error("runtime record left behind")
	}
	if _, ok := d[s.Keys().Intent(ref)]; ok {
		t.Error("intent left behind")
	}
}

// A watch response from a catching-up watch carries the store's newest
// revision in its header but events only up to some older one: the cache
// must count as seen only what it applied, or a waiter (WaitRevision,
// WaitRuntimes' since) skips the events still to come.
func TestWatchRevisionIsTheLastEventsNotTheHeaders(t *testing.T) {
	ev := func(rev int64) *clientv3.Event {
		return &clientv3.Event{Kv: &mvccpb.KeyValue{ModRevision: rev}}
	}
	backlog := clientv3.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: 2502}, Events: []*clientv3.Event{ev(3), ev(1002)}}
	if got := watchRevision(backlog); got != 1002 {
		t.Errorf("catching-up response: %d, want 1002 (its last event)", got)
	}
	progress := clientv3.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: 2502}}
	if got := watchRevision(progress); got != 2502 {
		t.Errorf("progress response: %d, want the header's 2502", got)
	}
}
