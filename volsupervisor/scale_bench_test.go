package volsupervisor

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
)

// countingSnapshotter is a fake Snapshotter (named as such: it stands for
// a backend's snapshot call, which this benchmark does not measure). It
// keeps names in memory and records when each snapshot was asked for.
type countingSnapshotter struct {
	mu    sync.Mutex
	snaps map[string][]string
	taken map[string][]time.Time
}

func newCountingSnapshotter() *countingSnapshotter {
	return &countingSnapshotter{snaps: map[string][]string{}, taken: map[string][]time.Time{}}
}

func (c *countingSnapshotter) CreateSnapshot(_ context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := v.Policy + "/" + v.Name
	if slices.Contains(c.snaps[k], snap) {
		return storage.SnapshotInfo{}, storage.ErrExists
	}
	c.snaps[k] = append(c.snaps[k], snap)
	slices.Sort(c.snaps[k])
	c.taken[k] = append(c.taken[k], time.Now())
	return storage.SnapshotInfo{Method: storage.SnapshotNative}, nil
}

func (c *countingSnapshotter) RemoveSnapshot(_ context.Context, v storage.Volume, snap string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := v.Policy + "/" + v.Name
	i := slices.Index(c.snaps[k], snap)
	if i < 0 {
		return storage.ErrNotFound
	}
	c.snaps[k] = slices.Delete(c.snaps[k], i, i+1)
	return nil
}

func (c *countingSnapshotter) ListSnapshots(_ context.Context, v storage.Volume) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.snaps[v.Policy+"/"+v.Name]), nil
}

func (c *countingSnapshotter) CopySnapshot(context.Context, storage.Volume, string, storage.Volume) error {
	return storage.ErrNotFound
}

// lateness is how much later than its predecessor plus the frequency each
// snapshot after a volume's first was asked for.
func (c *countingSnapshotter) lateness(freq time.Duration) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, ts := range c.taken {
		for i := 1; i < len(ts); i++ {
			out = append(out, max(0, ts[i].Sub(ts[i-1])-freq))
		}
	}
	slices.Sort(out)
	return out
}

func (c *countingSnapshotter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ts := range c.taken {
		n += len(ts)
	}
	return n
}

// etcdMetric sums one counter from etcd's own /metrics.
func etcdMetric(b *testing.B, endpoint, name string) float64 {
	b.Helper()
	v, err := etcdtest.Metric(endpoint, name)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSupervisor10000Volumes runs the volsupervisor leader over 10,000
// volumes that snapshot every minute and keep 5 (with -short: 200 volumes
// every 2 s), with a counting snapshotter, for three periods. It reports
// how late the snapshots after each volume's first came (p50, p99), the
// CPU the process used (the leader and the embedded etcd together: they
// share it) as a share of one core, etcd writes per snapshot (puts and
// deletes: snapshot records, prunes, status), snapshots per second, and the
// Go heap in use.
func BenchmarkSupervisor10000Volumes(b *testing.B) {
	n, freq := 10000, time.Minute
	if testing.Short() {
		n, freq = 200, 2*time.Second
	}
	cli, eps := etcdtest.Start(b)
	keys, _ := config.NewKeys("")
	st := store.New(cli, keys, 30*time.Second)
	ctx := context.Background()
	if err := st.Init(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := st.PutGlobal(ctx, config.Global{TTL: 10, Timeout: 1}); err != nil {
		b.Fatal(err)
	}
	p, err := config.DecodePolicy("p", fmt.Appendf(nil, `{"backend":"local","create":{"size":"8MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":%q,"keep":5}}}`, freq))
	if err != nil {
		b.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		b.Fatal(err)
	}
	h := store.Holder{Lease: lease.ID, Owner: "bench"}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ref := config.VolumeRef{Policy: "p", Name: fmt.Sprintf("v%05d", i)}
			v, err := config.NewVolume(ref, p, 1, nil, time.Now())
			if err == nil {
				_, err = st.CreateVolume(ctx, v, h)
			}
			if err == nil {
				_, err = st.ReleaseOp(ctx, ref, h)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	snaps := newCountingSnapshotter()
	s, err := New(Config{Client: cli, Keys: keys, Name: "bench", Log: quiet(),
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: snaps}})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Measure from the first snapshot on, over three periods.
	deadline := time.Now().Add(freq + time.Minute)
	for snaps.count() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no snapshot within a period")
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	window := 3 * freq
	b.ResetTimer()
	c0, t0, n0 := cpuTime(), time.Now(), snaps.count()
	w0 := etcdMetric(b, eps[0], "etcd_mvcc_put_total") + etcdMetric(b, eps[0], "etcd_mvcc_delete_total")
	time.Sleep(window) // the measurement window itself, not synchronisation
	c1, t1, n1 := cpuTime(), time.Now(), snaps.count()
	w1 := etcdMetric(b, eps[0], "etcd_mvcc_put_total") + etcdMetric(b, eps[0], "etcd_mvcc_delete_total")
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	late := snaps.lateness(freq)
	if len(late) == 0 {
		b.Fatal("no volume got a second snapshot")
	}
	taken := float64(n1 - n0)
	b.ReportMetric(float64(late[len(late)/2].Milliseconds()), "late-p50-ms")
	b.ReportMetric(float64(late[len(late)*99/100].Milliseconds()), "late-p99-ms")
	b.ReportMetric(100*float64(c1-c0)/float64(t1.Sub(t0)), "cpu-%core")
	b.ReportMetric((w1-w0)/taken, "etcd-writes/snapshot")
	b.ReportMetric(taken/t1.Sub(t0).Seconds(), "snapshots/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(n), "volumes")
	b.ReportMetric(0, "ns/op")
}
