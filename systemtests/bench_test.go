package systemtests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// benchVolumesFor is how many volumes the list benchmarks run against:
// $VOLPLUGIN_BENCH_VOLUMES (make bench's 100,000-volume run), else 10,000,
// or 500 with -short (make test's run of the bench command). Names are
// vol00000 to vol99999.
func benchVolumesFor() int {
	if n, err := strconv.Atoi(os.Getenv("VOLPLUGIN_BENCH_VOLUMES")); err == nil && n > 0 && n <= 100000 {
		return n
	}
	if testing.Short() {
		return 500
	}
	return 10000
}

var (
	benchOnce sync.Once
	benchURL  string
	benchErr  error
	// benchStop stops the volmaster the benchmarks started (TestMain calls
	// it when every benchmark is done).
	benchStop = func() {}
)

func stopBench() { benchStop() }

// benchVolmaster returns the volmaster the benchmarks use: the one named by
// $VOLMASTER (a live deployment) or a volmaster process started here with its
// embedded etcd. Either way it ends up with at least 10,000 volumes in policy
// "bench", created through the API.
func benchVolmaster(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		benchURL = os.Getenv("VOLMASTER")
		if benchURL == "" {
			dir, err := os.MkdirTemp("", "volplugin-bench-")
			if err != nil {
				benchErr = err
				return
			}
			// The process serves every benchmark; TestMain stops it at the end.
			vm := startVolmaster(&benchTB{B: b, dir: dir}, dir)
			benchURL = vm.URL
			benchStop = func() {
				_ = vm.stop()
				_ = os.RemoveAll(dir)
			}
		}
		benchErr = populate(benchURL)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchURL
}

// benchTB keeps a volmaster started for benchmarks alive until TestMain
// stops it (the first benchmark's cleanup would stop it too early).
type benchTB struct {
	*testing.B
	dir string
}

func (benchTB) Cleanup(func()) {}

// TempDir outlives the first benchmark too (its log file lives there).
func (b benchTB) TempDir() string {
	dir, err := os.MkdirTemp(b.dir, "log-")
	if err != nil {
		b.Fatal(err)
	}
	return dir
}

func populate(url string) error {
	ctx := context.Background()
	c, err := client.New(url)
	if err != nil {
		return err
	}
	if _, _, err := c.PutPolicy(ctx, "bench", []byte(`{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1h","keep":24}}}`)); err != nil {
		return err
	}
	have, err := c.Volumes(ctx, "bench")
	if err != nil {
		return err
	}
	if len(have) >= benchVolumesFor() {
		return nil
	}
	names := make(chan string)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				_, err := c.CreateVolume(ctx, config.VolumeRequest{Policy: "bench", Name: n})
				if err != nil && !errors.Is(err, config.ErrExists) {
					errc <- err
					return
				}
			}
		}()
	}
	start := time.Now()
	for i := range benchVolumesFor() {
		select {
		case names <- fmt.Sprintf("vol%05d", i):
		case err := <-errc:
			close(names)
			wg.Wait()
			return err
		}
	}
	close(names)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "created %d volumes in %s\n", benchVolumesFor(), time.Since(start).Round(time.Millisecond))
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// BenchmarkVolcliListAll runs `volcli volume list-all` end to end: process
// start, HTTP call, decoding and printing every line.
func BenchmarkVolcliListAll(b *testing.B) {
	url := benchVolmaster(b)
	b.ResetTimer()
	bin := filepath.Join(binDir, "volcli")
	for b.Loop() {
		out, err := exec.Command(bin, "--volmaster", url, "volume", "list-all").Output()
		if err != nil {
			b.Fatal(err)
		}
		if n := strings.Count(string(out), "\n"); n < benchVolumesFor() {
			b.Fatalf("list-all printed %d lines, want at least %d", n, benchVolumesFor())
		}
	}
}

// BenchmarkVolcliListAllWide is `volcli volume list-all -o wide`: the
// widest table, from every full record and every mount lock (two calls,
// whatever the number of volumes).
func BenchmarkVolcliListAllWide(b *testing.B) {
	url := benchVolmaster(b)
	b.ResetTimer()
	bin := filepath.Join(binDir, "volcli")
	for b.Loop() {
		out, err := exec.Command(bin, "--volmaster", url, "volume", "list-all", "-o", "wide").Output()
		if err != nil {
			b.Fatal(err)
		}
		if n := strings.Count(string(out), "\n"); n < benchVolumesFor()+1 {
			b.Fatalf("list-all -o wide printed %d lines, want at least %d", n, benchVolumesFor()+1)
		}
	}
}

// BenchmarkRESTListAll is GET /v1/volumes with the client decoding the answer.
func BenchmarkRESTListAll(b *testing.B) {
	url := benchVolmaster(b)
	b.ResetTimer()
	c, _ := client.New(url)
	ctx := context.Background()
	for b.Loop() {
		refs, err := c.Volumes(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		if len(refs) < benchVolumesFor() {
			b.Fatalf("listed %d volumes", len(refs))
		}
	}
}

// BenchmarkRESTGetVolume is GET /v1/volumes/{policy}/{name} from parallel
// keep-alive HTTP clients that read the whole answer, as a load generator
// does; it reports requests per second.
func BenchmarkRESTGetVolume(b *testing.B) {
	url := benchVolmaster(b)
	b.ResetTimer()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(4)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := hc.Get(fmt.Sprintf("%s/v1/volumes/bench/vol%05d", url, i%benchVolumesFor()))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("GET answered %s", resp.Status)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkClientGetVolume is the same through the Go client, which also
// decodes every record.
func BenchmarkClientGetVolume(b *testing.B) {
	url := benchVolmaster(b)
	b.ResetTimer()
	c, _ := client.New(url)
	ctx := context.Background()
	b.SetParallelism(4)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ref := config.VolumeRef{Policy: "bench", Name: fmt.Sprintf("vol%05d", i%benchVolumesFor())}
			if _, err := c.Volume(ctx, ref); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkVolmasterMemory reports the resident and heap memory of the
// volmaster holding the benchmark's volumes (after the listings ran), from
// its own /metrics.
func BenchmarkVolmasterMemory(b *testing.B) {
	url := benchVolmaster(b)
	for b.Loop() {
	}
	for name, unit := range map[string]string{"process_resident_memory_bytes": "rss-MB", "go_memstats_heap_inuse_bytes": "heap-MB"} {
		v, err := strconv.ParseFloat(scrape(b, url+"/metrics", name), 64)
		if err != nil {
			b.Fatalf("volmaster's %s: %v", name, err)
		}
		b.ReportMetric(v/(1<<20), unit)
	}
	b.ReportMetric(float64(benchVolumesFor()), "volumes")
}
