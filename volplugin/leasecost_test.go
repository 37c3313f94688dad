package volplugin

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/volmaster"
)

// etcdCounter reads one counter from etcd's own /metrics.
func etcdCounter(b *testing.B, endpoint, name string) float64 {
	b.Helper()
	v, err := etcdtest.Metric(endpoint, name)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// createNFSVolumes creates n mount-only volumes nfs/v0000... (eight at a
// time) and calls each with every new volume; the policy nfs must exist.
func createNFSVolumes(tb testing.TB, ctx context.Context, api *client.Client, n int, each func(config.Volume) error) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: "nfs", Name: fmt.Sprintf("v%04d", i)})
			if err == nil {
				err = each(v)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchmarkLeaseCost1000Locks holds 1,000 mount locks on one host lease (the
// locks a host with 1,000 mounted volumes holds; the volumes are mount-only,
// so no devices are needed) with volplugin's own keep-alive loop at the
// default TTL, and reports etcd's lease renewals and puts per second over one
// TTL, read from etcd's metrics. It runs one 30 s window whatever b.N is
// (with -short: a 3 s TTL and window).
func BenchmarkLeaseCost1000Locks(b *testing.B) {
	cli, eps := etcdtest.Start(b)
	keys, _ := config.NewKeys("")
	srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: map[string]storage.CRUD{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Run(ctx); err != nil {
		b.Fatal(err)
	}
	ts := newHTTPServer(b, srv)
	api, _ := client.New(ts)
	if _, _, err := api.PutPolicy(ctx, "nfs", []byte(`{"backend":"nfs"}`)); err != nil {
		b.Fatal(err)
	}
	window := config.DefaultGlobal().TTLDuration()
	if testing.Short() {
		// One renewal a second instead of every 10 s, over 3 s.
		if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 3, "Timeout": 5}`)); err != nil {
			b.Fatal(err)
		}
		window = 3 * time.Second
	}
	lease := newHostLease(api, "host1", "", quiet(), func(context.Context, int64) {})
	go lease.Run(ctx)
	id, err := lease.ID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	createNFSVolumes(b, ctx, api, n, func(v config.Volume) error {
		_, err := api.AcquireUse(ctx, v.Ref(), config.MountRequest{Hostname: "host1", Lease: id, MountID: "m"})
		return err
	})
	uses, _ := api.Uses(ctx)
	if len(uses) != n {
		b.Fatalf("%d locks held, want %d", len(uses), n)
	}
	b.ResetTimer()
	r0 := etcdCounter(b, eps[0], "etcd_debugging_lease_renewed_total")
	p0 := etcdCounter(b, eps[0], "etcd_mvcc_put_total")
	time.Sleep(window) // the measurement window itself, not synchronisation
	r1 := etcdCounter(b, eps[0], "etcd_debugging_lease_renewed_total")
	p1 := etcdCounter(b, eps[0], "etcd_mvcc_put_total")
	b.StopTimer()
	b.ReportMetric((r1-r0)/window.Seconds(), "renewals/s")
	b.ReportMetric((p1-p0)/window.Seconds(), "puts/s")
	b.ReportMetric(float64(n), "locks")
	if uses, _ := api.Uses(ctx); len(uses) != n {
		b.Fatalf("locks lost during the window: %d left", len(uses))
	}
}
