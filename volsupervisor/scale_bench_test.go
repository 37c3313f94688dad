package volsupervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/etcdclient"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/systemtests/etcddev"
)

// memSnapshotter is a fake Snapshotter (named as such: it stands for a
// backend's snapshot call, which BenchmarkSupervisor10000Volumes does not
// measure). It keeps snapshot names in memory.
type memSnapshotter struct {
	mu    sync.Mutex
	snaps map[string][]string
}

func (c *memSnapshotter) CreateSnapshot(_ context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := v.Policy + "/" + v.Name
	if slices.Contains(c.snaps[k], snap) {
		return storage.SnapshotInfo{}, storage.ErrExists
	}
	c.snaps[k] = append(c.snaps[k], snap)
	slices.Sort(c.snaps[k])
	return storage.SnapshotInfo{Method: storage.SnapshotNative}, nil
}

func (c *memSnapshotter) RemoveSnapshot(_ context.Context, v storage.Volume, snap string) error {
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

func (c *memSnapshotter) ListSnapshots(_ context.Context, v storage.Volume) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.snaps[v.Policy+"/"+v.Name]), nil
}

func (c *memSnapshotter) CopySnapshot(context.Context, storage.Volume, string, storage.Volume) error {
	return storage.ErrNotFound
}

// timedSnapshotter passes every call to a Snapshotter (the fake above, or
// the real local backend) and records when each snapshot was taken.
type timedSnapshotter struct {
	storage.Snapshotter
	mu    sync.Mutex
	taken map[string][]time.Time
}

func timed(s storage.Snapshotter) *timedSnapshotter {
	return &timedSnapshotter{Snapshotter: s, taken: map[string][]time.Time{}}
}

func (c *timedSnapshotter) CreateSnapshot(ctx context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	info, err := c.Snapshotter.CreateSnapshot(ctx, v, snap)
	if err == nil {
		c.mu.Lock()
		k := v.Policy + "/" + v.Name
		c.taken[k] = append(c.taken[k], time.Now())
		c.mu.Unlock()
	}
	return info, err
}

// lateness is how much later than its predecessor plus the frequency each
// snapshot after a volume's first was asked for.
func (c *timedSnapshotter) lateness(freq time.Duration) []time.Duration {
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

func (c *timedSnapshotter) count() int {
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
// every 2 s), with an in-memory snapshotter, for three periods. See
// scaleRun for what it reports.
func BenchmarkSupervisor10000Volumes(b *testing.B) {
	n, freq := 10000, time.Minute
	if testing.Short() {
		n, freq = 200, 2*time.Second
	}
	runScale(b, n, freq, timed(&memSnapshotter{snaps: map[string][]string{}}), nil)
}

// BenchmarkSupervisor1000LocalVolumes is the same run on the real local
// backend: 1,000 volumes (with -short: 50), each an 8 MB sparse image
// holding 256 KiB of data, so every snapshot is a real copy of the image
// (a reflink where the data dir supports it) and every prune a real remove.
func BenchmarkSupervisor1000LocalVolumes(b *testing.B) {
	n, freq := 1000, time.Minute
	if testing.Short() {
		n, freq = 50, 2*time.Second
	}
	dir := b.TempDir()
	lb, err := local.New(local.Config{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	create := func(ctx context.Context, v config.Volume) error {
		sv := storage.Volume{Policy: v.Policy, Name: v.Name, Size: 8 << 20}
		if err := lb.Create(ctx, sv); err != nil {
			return err
		}
		// The image's place as local.Config documents it.
		img := filepath.Join(dir, "images", v.Policy, v.Name+".img")
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(data, 1<<20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	runScale(b, n, freq, timed(lb), create)
}

// runScale creates n volumes of one policy that snapshots every freq and
// keeps 5 (create, if not nil, makes each one's backend image too), runs
// the volsupervisor leader over them, and measures three periods from the
// first snapshot on. etcd runs as its own process (scripts/etcd-dev), so the
// CPU this process uses is the leader's alone. It reports how late the
// snapshots after each volume's first came (p50, p99), the leader's and
// etcd's CPU as a share of one core, etcd writes per snapshot (puts and
// deletes: snapshot records, prunes, status) and requests per snapshot
// (every gRPC call etcd answered, reads included), snapshots per second, and
// the Go heap in use.
func runScale(b *testing.B, n int, freq time.Duration, snaps *timedSnapshotter, create func(context.Context, config.Volume) error) {
	ep := etcddev.Start(b, 1).Endpoints[0]
	ctx := context.Background()
	cli, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	keys, _ := config.NewKeys("")
	st := store.New(cli, keys, 30*time.Second)
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
			if err == nil && create != nil {
				err = create(ctx, v)
			}
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
	w0 := etcdMetric(b, ep, "etcd_mvcc_put_total") + etcdMetric(b, ep, "etcd_mvcc_delete_total")
	e0 := etcdMetric(b, ep, "process_cpu_seconds_total")
	r0 := etcdMetric(b, ep, "grpc_server_handled_total")
	time.Sleep(window) // the measurement window itself, not synchronisation
	c1, t1, n1 := cpuTime(), time.Now(), snaps.count()
	w1 := etcdMetric(b, ep, "etcd_mvcc_put_total") + etcdMetric(b, ep, "etcd_mvcc_delete_total")
	e1 := etcdMetric(b, ep, "process_cpu_seconds_total")
	r1 := etcdMetric(b, ep, "grpc_server_handled_total")
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	late := snaps.lateness(freq)
	if len(late) == 0 {
		b.Fatal("no volume got a second snapshot")
	}
	taken := float64(n1 - n0)
	elapsed := t1.Sub(t0)
	b.ReportMetric(float64(late[len(late)/2].Milliseconds()), "late-p50-ms")
	b.ReportMetric(float64(late[len(late)*99/100].Milliseconds()), "late-p99-ms")
	b.ReportMetric(100*float64(c1-c0)/float64(elapsed), "cpu-%core")
	b.ReportMetric(100*(e1-e0)/elapsed.Seconds(), "etcd-cpu-%core")
	b.ReportMetric((w1-w0)/taken, "etcd-writes/snapshot")
	b.ReportMetric((r1-r0)/taken, "etcd-requests/snapshot")
	b.ReportMetric(taken/elapsed.Seconds(), "snapshots/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(n), "volumes")
	b.ReportMetric(0, "ns/op")
}
