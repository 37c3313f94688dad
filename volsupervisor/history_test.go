package volsupervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/lock"
)

// revision is etcd's current revision: it moves with every write.
// changesBetween returns the key of every change etcd made after revision
// from up to and including to, in order, read back through a watch.
func changesBetween(t *testing.T, cli *clientv3.Client, from, to int64) []string {
	t.Helper()
	var keys []string
	if to <= from {
		return keys
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for resp := range cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from+1)) {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		// One revision may change several keys: a response holds all of
		// a revision's events.
		done := false
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= to {
				keys = append(keys, string(ev.Kv.Key))
			}
			done = done || ev.Kv.ModRevision >= to
		}
		if done {
			return keys
		}
	}
	t.Fatalf("watch ended before revision %d: %v", to, ctx.Err())
	return nil
}

func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// record is the status record s1 published in etcd.
func (e *env) record(t *testing.T) (config.SupervisorStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	sts, err := e.st.SupervisorStatuses(ctx)
	if err != nil || len(sts) != 1 {
		return config.SupervisorStatus{}, false
	}
	return sts[0], true
}

// waitRounds waits until s has done n more rounds.
func waitRounds(t *testing.T, s *Supervisor, n int64, d time.Duration) {
	t.Helper()
	from := s.rounds.Load()
	waitFor(t, fmt.Sprintf("%d more rounds", n), d, func() bool { return s.rounds.Load() >= from+n })
}

// Invariant 7: rounds in which nothing changes write nothing. Once the
// leader has taken its snapshot and published that, hundreds of rounds
// (snapshot schedule, ephemeral and reclaim checks) leave etcd's revision
// where it was; only the live status (GET /info) follows each round.
func TestIdleRoundsWriteNothing(t *testing.T) {
	e := setup(t, 5)
	e.volume(t, "snap", `{"snapshots":true,"snapshot":{"frequency":"1h","keep":2}}`)
	e.volumeOf(t, "eph", `"ephemeral":true`)
	e.volumeOf(t, "rec", `"reclaim":{"unused-for":"1h","enabled":true}`)
	s, _ := e.supervisorWith(t, Config{Name: "s1", Tick: 5 * time.Millisecond})
	waitFor(t, "the first snapshot in the status record", 20*time.Second, func() bool {
		st, ok := e.record(t)
		return ok && st.Leading && st.Taken == 1 && len(st.NextDue) == 1 && !st.LastRun.IsZero()
	})
	waitRounds(t, s, 2, 10*time.Second) // past the round that wrote it
	rev0, writes0 := revision(t, e.cli), s.statusWrites.Load()
	const idle = 300
	waitRounds(t, s, idle, time.Minute)
	rev1, writes1 := revision(t, e.cli), s.statusWrites.Load()
	t.Logf("%d idle rounds: etcd revision %d -> %d, status writes %d", idle, rev0, rev1, writes1-writes0)
	if rev1 != rev0 || writes1 != writes0 {
		t.Errorf("idle rounds wrote to etcd: revision %d -> %d, %d status writes", rev0, rev1, writes1-writes0)
	}
	rec, _ := e.record(t)
	if live := s.Status(); !live.LastRun.After(rec.LastRun) || rec.StatusRefresh.D() != DefaultStatusRefresh {
		t.Errorf("live last run %s, recorded %s (refresh %s): want the live one ahead, refresh %s",
			live.LastRun, rec.LastRun, rec.StatusRefresh, DefaultStatusRefresh)
	}
}

// While only the last-run time moves, the record is rewritten every
// StatusRefresh: the recorded time stays that fresh, and the writes are one
// per period, not one per round.
func TestStatusLastRunRefreshedEveryPeriod(t *testing.T) {
	e := setup(t, 5)
	const refresh = 300 * time.Millisecond
	s, _ := e.supervisorWith(t, Config{Name: "s1", Tick: 10 * time.Millisecond, StatusRefresh: refresh})
	var first config.SupervisorStatus
	waitFor(t, "a leading status record", 20*time.Second, func() bool {
		var ok bool
		first, ok = e.record(t)
		return ok && first.Leading && !first.LastRun.IsZero()
	})
	start, rev0, rounds0 := time.Now(), revision(t, e.cli), s.rounds.Load()
	waitFor(t, "the recorded last run to be refreshed", 10*time.Second, func() bool {
		rec, ok := e.record(t)
		return ok && rec.LastRun.After(first.LastRun)
	})
	waitRounds(t, s, 150, time.Minute)
	elapsed, rev1 := time.Since(start), revision(t, e.cli)
	// Every change etcd made in the window, from etcd itself (an in-process
	// counter read beside the revision races with a write in flight).
	changes := changesBetween(t, e.cli, rev0, rev1)
	writes, other := 0, []string{}
	for _, key := range changes {
		if key == e.keys.SupervisorStatus("s1") {
			writes++
		} else {
			other = append(other, key)
		}
	}
	t.Logf("%d rounds in %s: %d status writes, %d other changes (refresh %s)", s.rounds.Load()-rounds0, elapsed.Round(time.Millisecond), writes, len(other), refresh)
	if most := int(elapsed/refresh) + 1; writes < 1 || writes > most || len(other) > 0 {
		t.Errorf("%d status writes and other changes %v in %s: want 1..%d status writes and nothing else", writes, other, elapsed, most)
	}
	rec, _ := e.record(t)
	if lag := s.Status().LastRun.Sub(rec.LastRun); lag > refresh+time.Second {
		t.Errorf("recorded last run %s behind the live one, refresh is %s", lag, refresh)
	}
}

// The soak of issue 11: 1,000 status rounds and 10,000 lock/unlock cycles
// (one host lease) on the embedded etcd volmaster runs (with a 1s
// auto-compaction retention here instead of its 10m), then compaction and a
// defragmentation: the database file is back to about its size before.
// Fast raft ticks and etcd's UnsafeNoFsync keep it short; neither changes
// what is stored.
func TestSoakHistoryCompactsAndDefragments(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	cli, srv := etcdtest.StartServer(t, etcdserver.Config{Fast: true, UnsafeNoFsync: true, CompactionRetention: time.Second})
	e := setupOn(t, cli, 30)
	ctx := t.Context()
	const volumes, cycles, statusRounds = 8, 10000, 1000
	refs := make([]config.VolumeRef, volumes)
	for i := range refs {
		refs[i] = e.volume(t, fmt.Sprintf("v%d", i), `{}`)
	}
	endpoint := srv.Endpoints[0]
	dbSize := func() (size, inUse int64) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := cli.Status(sctx, endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSize, st.DbSizeInUse
	}
	before, beforeInUse := dbSize()
	revBefore := revision(t, cli)

	// 1,000 status rounds.
	began := time.Now()
	s, stop := e.supervisorWith(t, Config{Name: "s1", Tick: time.Millisecond})
	waitFor(t, "s1 to lead and publish", 20*time.Second, func() bool { st, ok := e.record(t); return ok && st.Leading })
	rev0 := revision(t, cli)
	waitRounds(t, s, statusRounds, 2*time.Minute)
	statusRevs := revision(t, cli) - rev0
	stop()
	roundsTook := time.Since(began)

	// 10,000 lock/unlock cycles on one host lease, one worker per volume.
	locks := lock.New(cli, e.keys, 10*time.Second)
	hl, err := locks.Grant(ctx, "host1", "", 60)
	if err != nil {
		t.Fatal(err)
	}
	rev1 := revision(t, cli)
	began = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, volumes)
	for w, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := config.MountRequest{Hostname: "host1", Lease: hl.ID, MountID: fmt.Sprintf("m%d", w)}
			for range cycles / volumes {
				if _, err := locks.Acquire(ctx, ref, req); err != nil {
					errs <- fmt.Errorf("acquire %s: %w", ref, err)
					return
				}
				if _, err := locks.Release(ctx, ref, req); err != nil {
					errs <- fmt.Errorf("release %s: %w", ref, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cyclesTook := time.Since(began)
	last := revision(t, cli)
	soaked, soakedInUse := dbSize()

	// etcd's own auto-compaction reaches the last revision...
	began = time.Now()
	waitFor(t, "auto-compaction up to the last revision", 30*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cli.Get(gctx, "/revision-probe", clientv3.WithRev(last-1))
		return errors.Is(err, rpctypes.ErrCompacted)
	})
	compactTook := time.Since(began)
	compacted, compactedInUse := dbSize()
	// ... and a defragmentation gives the freed pages back. (Thresholds
	// lowered: volmaster's defaults wait for 64 MiB and half the file free.)
	res, err := etcdserver.Defrag{MinFree: 1, MinFreeRatio: 0.01}.Check(ctx, cli, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	after, afterInUse := dbSize()

	t.Logf("status rounds: %d rounds wrote %d etcd revisions (%s)", statusRounds, statusRevs, roundsTook.Round(time.Millisecond))
	t.Logf("lock/unlock: %d cycles on %d volumes, one lease: %d revisions (%s)", cycles, volumes, last-rev1, cyclesTook.Round(time.Millisecond))
	t.Logf("etcd db bytes: before %d (in use %d), after soak %d (in use %d), after auto-compaction %d (in use %d, %s), after defragment %d (in use %d)",
		before, beforeInUse, soaked, soakedInUse, compacted, compactedInUse, compactTook.Round(time.Millisecond), after, afterInUse)
	t.Logf("volmaster's default thresholds would defragment the compacted file: %v; revisions %d -> %d",
		etcdserver.Defrag{}.Worthwhile(compacted, compactedInUse), revBefore, last)
	if statusRevs > 2 {
		t.Errorf("%d status rounds wrote %d revisions, want at most 2 (leading, first round)", statusRounds, statusRevs)
	}
	if !res.Defragmented {
		t.Errorf("not defragmented: %+v", res)
	}
	const slack = 256 << 10
	if after > before+slack {
		t.Errorf("db is %d bytes after compaction and defragmentation, %d before the soak: more than %d bytes of slack", after, before, slack)
	}
}
