package etcdserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

func TestDefragWorthwhile(t *testing.T) {
	const mib = 1 << 20
	var d etcdserver.Defrag // volmaster's defaults: 64 MiB and half the file free
	for _, c := range []struct {
		size, inUse int64
		want        bool
	}{
		{0, 0, false},
		{100 * mib, 90 * mib, false},  // 10 MiB free
		{200 * mib, 136 * mib, false}, // 64 MiB free, but not half
		{100 * mib, 40 * mib, false},  // more than half free, but 60 MiB
		{128 * mib, 64 * mib, true},   // 64 MiB and half
		{1024 * mib, 100 * mib, true},
		{60 * mib, 1 * mib, false}, // nearly all free, but under 64 MiB
	} {
		if got := d.Worthwhile(c.size, c.inUse); got != c.want {
			t.Errorf("Worthwhile(%d MiB, %d MiB in use) = %v, want %v", c.size/mib, c.inUse/mib, got, c.want)
		}
	}
	if !(etcdserver.Defrag{MinFree: 1, MinFreeRatio: 0.1}).Worthwhile(100, 80) {
		t.Error("20 of 100 bytes free with MinFree 1, MinFreeRatio 0.1: want true")
	}
}

func TestStartRefusesNegativeRetention(t *testing.T) {
	_, err := etcdserver.Start(t.Context(), etcdserver.Config{Dir: t.TempDir(), ClientURL: "http://127.0.0.1:0",
		PeerURL: "http://127.0.0.1:0", CompactionRetention: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("Start with retention -1s = %v, want an error", err)
	}
}

// With CompactionRetention etcd compacts its history by itself, and Run
// (volmaster's maintenance of its embedded etcd) then gives the freed space
// back; Check leaves a file with little free space alone.
func TestAutoCompactionAndDefragRun(t *testing.T) {
	cli, srv := etcdtest.StartServer(t, etcdserver.Config{Fast: true, UnsafeNoFsync: true, CompactionRetention: time.Second})
	ctx := t.Context()
	endpoint := srv.Endpoints[0]
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	status := func() *clientv3.StatusResponse {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := cli.Status(sctx, endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// About half of the file is free after the compaction (10 of 22 MiB in
	// use), so a ratio of a half would make the test depend on page reuse.
	d := etcdserver.Defrag{MinFree: 1 << 20, MinFreeRatio: 0.25, Log: quiet}
	if r, err := d.Check(ctx, cli, endpoint); err != nil || r.Defragmented {
		t.Fatalf("fresh etcd: Check = %+v, %v; want nothing done", r, err)
	}

	// 4 MiB of values, each overwritten 4 times: 16 MiB of history.
	val := strings.Repeat("x", 4<<10)
	for round := range 4 {
		for i := range 1024 {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cli.Put(pctx, fmt.Sprintf("/k/%04d", i), fmt.Sprint(round)+val)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	last := status().Header.Revision
	waitFor(t, "auto-compaction up to the last revision", 30*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cli.Get(gctx, "/k/0000", clientv3.WithRev(last-1))
		return errors.Is(err, rpctypes.ErrCompacted)
	})
	compacted := status()
	d.Every = 20 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(rctx, cli, endpoint) }()
	defer func() { cancel(); <-done }()
	var after *clientv3.StatusResponse
	waitFor(t, "the maintenance loop to defragment", 30*time.Second, func() bool {
		after = status()
		return after.DbSize < compacted.DbSize/2
	})
	t.Logf("db bytes: after writes and auto-compaction %d (in use %d), after Run's defragmentation %d (in use %d)",
		compacted.DbSize, compacted.DbSizeInUse, after.DbSize, after.DbSizeInUse)
	// The data is all there.
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	defer gcancel()
	resp, err := cli.Get(gctx, "/k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1024 {
		t.Fatalf("keys after defragmentation: %v, %v", resp, err)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
