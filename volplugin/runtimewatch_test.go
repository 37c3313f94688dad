package volplugin

import (
	"context"
	"net/http"
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

// BenchmarkRuntimeWatch1000Mounts runs volplugin's runtime watch for a host
// with 1,000 mounted volumes (mount-only volumes put in the driver's table;
// no devices needed) against a real volmaster, counts the requests it sends
// over one 30 s window (3 s with -short), then measures how long a runtime upload takes to
// reach the driver. Polling each volume every 3 s would be 333 requests/s.
func BenchmarkRuntimeWatch1000Mounts(b *testing.B) {
	cli, _ := etcdtest.Start(b)
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
	var requests atomic.Int64
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	api, _ := client.New(ts.URL)
	if _, _, err := api.PutPolicy(ctx, "nfs", []byte(`{"backend":"nfs"}`)); err != nil {
		b.Fatal(err)
	}
	d, err := New(Config{API: api, Host: "host1", Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	createNFSVolumes(b, ctx, api, n, func(v config.Volume) error {
		d.mu.Lock()
		d.mounts[v.Ref()] = &mounted{vol: v, ids: map[string]bool{"m": true}}
		d.mu.Unlock()
		return nil
	})
	go d.watchRuntime(ctx)
	d.noteMounts()

	window := 30 * time.Second
	if testing.Short() {
		window = 3 * time.Second
	}
	b.ResetTimer()
	r0 := requests.Load()
	time.Sleep(window) // the measurement window itself, not synchronisation
	r1 := requests.Load()

	ref := config.VolumeRef{Policy: "nfs", Name: "v0500"}
	start := time.Now()
	if _, err := api.PutRuntime(ctx, ref, []byte(`{"rate-limit":{"write-bps":"5MB"}}`)); err != nil {
		b.Fatal(err)
	}
	for {
		d.mu.Lock()
		got := d.mounts[ref].vol.Runtime.RateLimit.WriteBPS
		d.mu.Unlock()
		if got == 5<<20 {
			break
		}
		if time.Since(start) > 10*time.Second {
			b.Fatalf("the runtime upload did not reach the driver within 10 s")
		}
		time.Sleep(time.Millisecond) // polling interval of the measurement
	}
	latency := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(r1-r0)/window.Seconds(), "requests/s")
	b.ReportMetric(float64(latency.Microseconds())/1000, "change-ms")
	b.ReportMetric(n, "mounts")
}

// The runtime watch follows the set of mounted volumes: a change of a
// mounted volume is applied, and a volume mounted while a poll is waiting
// joins at once (the poll starts again with it), not after the poll's wait.
func TestRuntimeWatchFollowsMounts(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, _, err := c.api.PutPolicy(ctx, "nfs", []byte(`{"backend":"nfs"}`)); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{API: c.api, Host: "h1", Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	mount := func(name string) config.VolumeRef {
		t.Helper()
		v, err := c.api.CreateVolume(ctx, config.VolumeRequest{Policy: "nfs", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		d.mounts[v.Ref()] = &mounted{vol: v, ids: map[string]bool{"m": true}}
		d.mu.Unlock()
		d.noteMounts()
		return v.Ref()
	}
	limitReaches := func(ref config.VolumeRef, doc string, want int64) {
		t.Helper()
		if _, err := c.api.PutRuntime(ctx, ref, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second) // well under the poll's 30 s wait
		for {
			d.mu.Lock()
			got := d.mounts[ref].vol.Runtime.RateLimit.WriteBPS
			d.mu.Unlock()
			if int64(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: write-bps %d after the upload, want %d", ref, got, want)
			}
			time.Sleep(5 * time.Millisecond) // polling interval
		}
	}
	a := mount("a")
	go d.watchRuntime(ctx)
	limitReaches(a, `{"rate-limit":{"write-bps":"1MB"}}`, 1<<20)
	// A poll on {a} is waiting now; b must join it at once.
	b := mount("b")
	limitReaches(b, `{"rate-limit":{"write-bps":"2MB"}}`, 2<<20)
	limitReaches(a, `{"rate-limit":{"write-bps":"3MB"}}`, 3<<20)
}
