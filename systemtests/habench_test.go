package systemtests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/systemtests/etcddev"
)

// BenchmarkHAControlPlane measures the request figures of issue 12 through
// two volmaster processes on a three-member etcd cluster (scripts/etcd-dev)
// and, in the same run as its reference, through one volmaster on its
// embedded single member (the list benchmarks' volmaster): volcli volume
// list-all at the benchmarks' volume count (median of 5), volume GETs per
// second from parallel keep-alive clients spread over the volmasters (2 s),
// and volume creates per second from 8 parallel clients.
func BenchmarkHAControlPlane(b *testing.B) {
	one := benchVolmaster(b)
	dir, err := os.MkdirTemp("", "volplugin-habench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	etcd := etcddev.Start(b, 3)
	eps := strings.Join(etcd.Endpoints, ",")
	// Both share one local-backend directory, as volmasters share a Ceph
	// cluster.
	vmA := startVolmaster(b, dir, "--etcd", eps)
	vmB := startVolmaster(b, dir, "--etcd", eps)
	ha := []string{vmA.URL, vmB.URL}
	start := time.Now()
	if err := populate(strings.Join(ha, ",")); err != nil {
		b.Fatal(err)
	}
	b.Logf("populated the 3-member cluster with %d volumes in %s", benchVolumesFor(), time.Since(start).Round(time.Millisecond))
	creates := 400
	if testing.Short() {
		creates = 80
	}
	b.ResetTimer()
	for b.Loop() {
		for _, side := range []struct {
			name string
			urls []string
		}{{"one", []string{one}}, {"ha", ha}} {
			b.ReportMetric(listAllMedian(b, strings.Join(side.urls, ",")), side.name+"-listall-ms")
			b.ReportMetric(getsPerSecond(b, side.urls, 2*time.Second), side.name+"-get-req/s")
			b.ReportMetric(createsPerSecond(b, side.urls, side.name, creates), side.name+"-creates/s")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// listAllMedian runs volcli volume list-all five times and returns the
// median in milliseconds.
func listAllMedian(b *testing.B, urls string) float64 {
	bin := filepath.Join(binDir, "volcli")
	var took []time.Duration
	for range 5 {
		t0 := time.Now()
		out, err := exec.Command(bin, "--volmaster", urls, "volume", "list-all").Output()
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
		if n := strings.Count(string(out), "\n"); n < benchVolumesFor() {
			b.Fatalf("list-all printed %d lines, want at least %d", n, benchVolumesFor())
		}
	}
	slices.Sort(took)
	return float64(took[len(took)/2].Microseconds()) / 1000
}

// getsPerSecond runs parallel keep-alive GETs of single volumes for d, each
// client on one of urls in turn, and returns the answers per second.
func getsPerSecond(b *testing.B, urls []string, d time.Duration) float64 {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := urls[w%len(urls)]
			for i := w; time.Now().Before(deadline); i += 8 {
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
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// createsPerSecond creates count volumes (and removes them afterwards,
// untimed) from 8 parallel clients spread over urls.
func createsPerSecond(b *testing.B, urls []string, tag string, count int) float64 {
	ctx := context.Background()
	clients := make([]*client.Client, len(urls))
	for i, u := range urls {
		c, err := client.New(u)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	names := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			for i := range names {
				if _, err := c.CreateVolume(ctx, config.VolumeRequest{Policy: "bench", Name: fmt.Sprintf("create-%s-%05d", tag, i)}); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range count {
		names <- i
	}
	close(names)
	wg.Wait()
	rate := float64(count) / time.Since(t0).Seconds()
	for i := range count {
		ref := config.VolumeRef{Policy: "bench", Name: fmt.Sprintf("create-%s-%05d", tag, i)}
		if _, err := clients[0].RemoveVolume(ctx, ref, config.RemoveOptions{}); err != nil {
			b.Error(err)
		}
	}
	return rate
}
