package volplugin

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/volmaster"
)

// Two volmasters on one etcd; the host lease is renewed through the list of
// both. The first is stopped: renewals go on through the second, the lease
// is never replaced and the mount lock on it stays.
func TestHostLeaseSurvivesLosingOneVolmaster(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var servers [2]*httptest.Server
	for i := range servers {
		srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: map[string]storage.CRUD{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Run(ctx); err != nil {
			t.Fatal(err)
		}
		servers[i] = httptest.NewServer(srv.Handler())
		t.Cleanup(servers[i].Close)
	}
	api, err := client.New(servers[0].URL + "," + servers[1].URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 2, "Timeout": 1}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PutPolicy(ctx, "nfs", []byte(`{"backend":"nfs"}`)); err != nil {
		t.Fatal(err)
	}
	var renewed, failed atomic.Int64
	lease := newHostLease(api, "host1", "", quiet(), func(context.Context, int64) {})
	lease.onRenewed = func() { renewed.Add(1) }
	lease.onRenewFailure = func() { failed.Add(1) }
	go lease.Run(ctx)
	id, err := lease.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: "nfs", Name: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.AcquireUse(ctx, v.Ref(), config.MountRequest{Hostname: "host1", Lease: id, MountID: "m1"}); err != nil {
		t.Fatal(err)
	}
	if got := api.Current(); got != servers[0].URL {
		t.Fatalf("calls go to %s, want the first volmaster %s", got, servers[0].URL)
	}

	// The first volmaster goes away as a stopped process does.
	servers[0].Listener.Close()
	servers[0].CloseClientConnections()
	// Six renewals at TTL/3 span two TTLs: a lease renewed only through the
	// first volmaster would have expired twice over.
	want := renewed.Load() + 6
	deadline := time.Now().Add(30 * time.Second)
	for renewed.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d renewals in 30s after the first volmaster stopped (%d failed)", renewed.Load(), failed.Load())
		}
		time.Sleep(50 * time.Millisecond) // polling a counter, with the deadline above
	}
	if got, _, _ := lease.State(); got != id {
		t.Fatalf("host lease changed from %x to %x: it was lost", id, got)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d renewals failed although the second volmaster answered", n)
	}
	if got := api.Current(); got != servers[1].URL {
		t.Fatalf("calls go to %s, want the second volmaster %s", got, servers[1].URL)
	}
	u, err := api.Use(ctx, v.Ref())
	if err != nil {
		t.Fatalf("mount lock after the failover: %v", err)
	}
	if u.Lease != id || u.Hostname != "host1" {
		t.Fatalf("mount lock is %+v, want host1 on lease %x", u, id)
	}
}

// Losing the host lease is an event: Lost(id) closes once volmaster has
// been out of reach for the TTL, before anything uses the lease; a new lease
// comes with an open channel when volmaster is back; Done closes with Run.
func TestHostLeaseLostIsAnEvent(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: map[string]storage.CRUD{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	// A cuttable TCP link between volplugin and volmaster (a fault injector).
	link := etcdtest.NewLink(t, ts.URL)
	api, err := client.New(link.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 2, "Timeout": 1}`)); err != nil {
		t.Fatal(err)
	}
	lease := newHostLease(api, "host1", "", quiet(), func(context.Context, int64) {})
	runCtx, stop := context.WithCancel(ctx)
	go lease.Run(runCtx)
	first, err := lease.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-lease.Lost(first):
		t.Fatal("Lost closed while the lease is renewed")
	default:
	}
	link.Cut()
	select {
	case <-lease.Lost(first):
	case <-time.After(30 * time.Second):
		t.Fatal("Lost never closed with volmaster out of reach")
	}
	if got := lease.current(); got != 0 {
		t.Errorf("current() = %x after the lease was lost, want 0", got)
	}
	link.Restore()
	deadline := time.Now().Add(30 * time.Second)
	var second int64
	for second == 0 || second == first {
		if time.Now().After(deadline) {
			t.Fatal("no new lease after volmaster came back")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
		second = lease.current()
	}
	select {
	case <-lease.Lost(second):
		t.Fatal("the new lease's Lost is closed")
	case <-lease.Lost(first):
	}
	stop()
	select {
	case <-lease.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("Done never closed after Run's context ended")
	}
}
