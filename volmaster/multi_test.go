package volmaster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// Two volmasters on one etcd and one backend (as two hosts on one Ceph
// cluster) get the same creates, snapshots and removes at the same time.
// What is left is what one volmaster alone could have left: every volume
// exactly once, with its image; a snapshot record for every snapshot
// answered; after the removes no record, no image and one trash entry each;
// no operation lock or intent behind.
func TestTwoVolmastersConcurrentOperations(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	dataDir := t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var srvs [2]*Server
	var apis [2]*client.Client
	for i := range srvs {
		var url string
		srvs[i], url = serve(t, Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{config.BackendLocal: lb},
			Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb}})
		apis[i], _ = client.New(url, client.WithRetries(0, 0))
	}
	ctx := context.Background()
	if _, _, err := apis[0].PutPolicy(ctx, "p", []byte(localPolicy)); err != nil {
		t.Fatal(err)
	}
	const n = 8
	refs := make([]config.VolumeRef, n)
	for i := range refs {
		refs[i] = config.VolumeRef{Policy: "p", Name: fmt.Sprintf("v%d", i)}
	}
	// each runs f for every volume on both volmasters at once and returns
	// the errors by volume.
	each := func(f func(api *client.Client, ref config.VolumeRef) error) [][]error {
		out := make([][]error, n)
		for i := range out {
			out[i] = make([]error, 2)
		}
		var wg sync.WaitGroup
		for i, ref := range refs {
			for j, api := range apis {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out[i][j] = f(api, ref)
				}()
			}
		}
		wg.Wait()
		return out
	}
	noLocksLeft := func(when string) {
		t.Helper()
		for _, prefix := range []string{keys.OpLocks(), keys.Intents()} {
			resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) != 0 {
				t.Fatalf("%s: %d keys left under %s", when, len(resp.Kvs), prefix)
			}
		}
	}

	created := each(func(api *client.Client, ref config.VolumeRef) error {
		_, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: ref.Policy, Name: ref.Name})
		return err
	})
	for i, errs := range created {
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, config.ErrExists) && !errors.Is(err, config.ErrBusy) && !errors.Is(err, config.ErrInUse):
				t.Fatalf("create %s: %v", refs[i], err)
			}
		}
		if won != 1 {
			t.Fatalf("create %s succeeded on %d volmasters, want exactly one", refs[i], won)
		}
		v, err := apis[1-i%2].Volume(ctx, refs[i])
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := lb.Exists(ctx, storage.Volume{Policy: v.Policy, Name: v.Name}); err != nil || !ok {
			t.Fatalf("record of %s without its image (%v)", refs[i], err)
		}
	}
	noLocksLeft("after the creates")

	snapped := each(func(api *client.Client, ref config.VolumeRef) error {
		_, err := api.TakeSnapshot(ctx, ref)
		return err
	})
	for i, errs := range snapped {
		answered := 0
		for _, err := range errs {
			switch {
			case err == nil:
				answered++
			case !errors.Is(err, config.ErrBusy) && !errors.Is(err, config.ErrInUse):
				t.Fatalf("snapshot %s: %v", refs[i], err)
			}
		}
		snaps, err := apis[0].Snapshots(ctx, refs[i])
		if err != nil {
			t.Fatal(err)
		}
		if answered == 0 || len(snaps) != answered {
			t.Fatalf("%s: %d snapshots answered, %d recorded", refs[i], answered, len(snaps))
		}
	}
	noLocksLeft("after the snapshots")

	removed := each(func(api *client.Client, ref config.VolumeRef) error {
		_, err := api.RemoveVolume(ctx, ref, config.RemoveOptions{})
		return err
	})
	for i, errs := range removed {
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, config.ErrNotFound) && !errors.Is(err, config.ErrBusy) && !errors.Is(err, config.ErrInUse):
				t.Fatalf("remove %s: %v", refs[i], err)
			}
		}
		if won != 1 {
			t.Fatalf("remove %s succeeded on %d volmasters, want exactly one", refs[i], won)
		}
		if _, err := apis[i%2].Volume(ctx, refs[i]); !errors.Is(err, config.ErrNotFound) {
			t.Fatalf("%s after its remove: %v, want not found", refs[i], err)
		}
		if ok, err := lb.Exists(ctx, storage.Volume{Policy: refs[i].Policy, Name: refs[i].Name}); err != nil || ok {
			t.Fatalf("image of removed %s still there (%v)", refs[i], err)
		}
		trash, err := apis[0].Trash(ctx, refs[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(trash) != 1 {
			t.Fatalf("%s: %d trash entries after one remove, want 1", refs[i], len(trash))
		}
	}
	noLocksLeft("after the removes")
}

// Recovery on one volmaster leaves alone an operation another live
// volmaster is in the middle of (its lock is on that volmaster's lease),
// and takes it over once that volmaster is gone (its lease ended).
func TestRecoveryLeavesLiveVolmastersOperation(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	lb, err := local.New(local.Config{DataDir: t.TempDir(), MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{config.BackendLocal: lb}}
	a, urlA := serve(t, cfg)
	b, _ := serve(t, cfg)
	ctx := context.Background()
	api, _ := client.New(urlA)
	if _, _, err := api.PutPolicy(ctx, "p", []byte(localPolicy)); err != nil {
		t.Fatal(err)
	}
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	if _, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: "p", Name: "v"}); err != nil {
		t.Fatal(err)
	}
	// a is half-way through a remove: lock and intent are written.
	ha, err := a.holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store().BeginRemove(ctx, ref, ha, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := b.RecoverInterrupted(ctx); err != nil || n != 0 {
		t.Fatalf("b recovered %d operations (%v) while a is alive and working; want 0", n, err)
	}
	resp, err := cli.Get(ctx, keys.Intent(ref))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("a's intent after b's recovery: %v %v; want it untouched", resp, err)
	}
	// a dies: its lease ends, and with it the lock.
	if _, err := cli.Revoke(ctx, ha.Lease); err != nil {
		t.Fatal(err)
	}
	// b recovers it (its own background loop may be first: either way).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := b.RecoverInterrupted(ctx); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, keys.Intent(ref))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the remove cut short by a's death was not recovered in 30s")
		}
	}
	if _, err := b.Store().GetVolume(ctx, ref); err != nil {
		t.Fatalf("the remove cut short with the image there must be undone: %v", err)
	}
}

// Each volmaster keeps the audit entries of the requests it answered, each
// stamped with its ID, so entries gathered from several can be told apart.
func TestAuditNamesItsVolmaster(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	cfg := Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{}}
	a, urlA := serve(t, cfg)
	b, urlB := serve(t, cfg)
	ha, hb := &harness{srv: a, url: urlA}, &harness{srv: b, url: urlB}
	ha.must(t, 200, "PUT", "/v1/policies/pa", `{"backend":"nfs"}`)
	hb.must(t, 200, "PUT", "/v1/policies/pb", `{"backend":"nfs"}`)
	for _, c := range []struct {
		h      *harness
		id, in string
	}{{ha, a.id, "/v1/policies/pa"}, {hb, b.id, "/v1/policies/pb"}} {
		var entries []config.AuditEntry
		if err := json.Unmarshal([]byte(c.h.must(t, 200, "GET", "/v1/audit", "")), &entries); err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Path != c.in || entries[0].Volmaster != c.id {
			t.Fatalf("audit of %s = %+v, want its one upload %s stamped %s", c.id, entries, c.in, c.id)
		}
	}
}
