package volplugin

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settledGoroutines lets goroutines of finished requests exit before counting.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling interval
		m := runtime.NumGoroutine()
		if m >= n {
			return n
		}
		n = m
	}
	return n
}

// 500 mount/unmount cycles leave the goroutine and fd counts flat (this test
// process holds volplugin, volmaster and etcd, so all three are covered).
func TestMountUnmountCyclesDoNotLeak(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("500 real mount cycles; skipped with -short")
	}
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	a := c.startHost(t, "hostA", root, false)
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/soak"}); e != "" {
		t.Fatal(e)
	}
	cycle := func(i int) {
		id := fmt.Sprintf("id%d", i)
		a.mount(t, "policy1/soak", id)
		a.unmount(t, "policy1/soak", id)
	}
	for i := range 5 { // warm up: mkfs, connection pools
		cycle(i)
	}
	g0, f0 := settledGoroutines(), openFDs(t)
	start := time.Now()
	const n = 500
	for i := range n {
		cycle(100 + i)
	}
	g1, f1 := settledGoroutines(), openFDs(t)
	t.Logf("%d cycles in %s: goroutines %d -> %d, open fds %d -> %d", n, time.Since(start).Round(time.Millisecond), g0, g1, f0, f1)
	if g1 > g0+5 || f1 > f0+5 {
		t.Errorf("leak: goroutines %d -> %d, fds %d -> %d", g0, g1, f0, f1)
	}
	if len(a.info(t).Mounts) != 0 {
		t.Error("still mounted after the cycles")
	}
}
