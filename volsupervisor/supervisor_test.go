package volsupervisor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/internal/volops"
	"github.com/volplugin/volplugin/lock"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

type env struct {
	cli     *clientv3.Client
	keys    config.Keys
	st      *store.Store
	lb      *local.Backend
	dataDir string
}

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func setup(t *testing.T, ttl int64) *env {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	return setupOn(t, cli, ttl)
}

// setupOn is setup on the etcd cli talks to.
func setupOn(t *testing.T, cli *clientv3.Client, ttl int64) *env {
	t.Helper()
	keys, _ := config.NewKeys("")
	dataDir := t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cli: cli, keys: keys, st: store.New(cli, keys, 5*time.Second), lb: lb, dataDir: dataDir}
	ctx := context.Background()
	if err := e.st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.PutGlobal(ctx, config.Global{TTL: ttl, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// volume creates a volume record and its image, as volmaster does.
func (e *env) volume(t *testing.T, name, runtime string) config.VolumeRef {
	return e.volumeOf(t, name, `"runtime":`+runtime)
}

// volumeOf is volume with more policy fields.
func (e *env) volumeOf(t *testing.T, name, fields string) config.VolumeRef {
	t.Helper()
	ctx := context.Background()
	p, err := config.DecodePolicy("p", []byte(`{"backend":"local","create":{"size":"8MB"},`+fields+`}`))
	if err != nil {
		t.Fatal(err)
	}
	ref := config.VolumeRef{Policy: "p", Name: name}
	v, err := config.NewVolume(ref, p, 1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lease, _ := e.cli.Grant(ctx, 60)
	h := store.Holder{Lease: lease.ID, Owner: "test"}
	if _, err := e.st.CreateVolume(ctx, v, h); err != nil {
		t.Fatal(err)
	}
	sv, _ := storage.FromConfig(&v)
	if err := e.lb.Create(ctx, sv); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ReleaseOp(ctx, ref, h); err != nil {
		t.Fatal(err)
	}
	return ref
}

func (e *env) supervisor(t *testing.T, name string) (*Supervisor, context.CancelFunc) {
	t.Helper()
	return e.supervisorWith(t, Config{Name: name, Tick: 100 * time.Millisecond})
}

// supervisorWith runs a supervisor with cfg's name, tick, status refresh
// and snapshotters (default: e's local backend) on e.
func (e *env) supervisorWith(t *testing.T, cfg Config) (*Supervisor, context.CancelFunc) {
	t.Helper()
	snaps := cfg.Snapshotters
	if snaps == nil {
		snaps = map[string]storage.Snapshotter{config.BackendLocal: e.lb}
	}
	s, err := New(Config{Client: e.cli, Keys: e.keys, Name: cfg.Name, Log: quiet(), Tick: cfg.Tick, StatusRefresh: cfg.StatusRefresh,
		Snapshotters: snaps,
		Backends:     map[string]storage.CRUD{config.BackendLocal: e.lb}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func (e *env) backendSnaps(t *testing.T, ref config.VolumeRef) []string {
	t.Helper()
	names, err := e.lb.ListSnapshots(context.Background(), storage.Volume{Policy: ref.Policy, Name: ref.Name})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return names
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

func TestScheduledSnapshotsKeepNewest(t *testing.T) {
	e := setup(t, 5)
	ref := e.volume(t, "v", `{"snapshots":true,"snapshot":{"frequency":"2s","keep":3}}`)
	s, _ := e.supervisor(t, "s1")
	start := time.Now()
	waitFor(t, "10s of scheduling", 15*time.Second, func() bool { return time.Since(start) >= 10*time.Second })
	st := s.Status()
	snaps, err := e.st.ListSnapshots(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 {
		t.Fatalf("after 10s: %d snapshot records, want 3 (status %+v)", len(snaps), st)
	}
	if st.Taken < 5 || st.Pruned != st.Taken-3 {
		t.Errorf("status %+v: want about 5 taken and all but 3 pruned", st)
	}
	// The kept ones are the newest: the last was taken within one period.
	if age := time.Since(snaps[2].Time); age > 2*time.Second+500*time.Millisecond {
		t.Errorf("newest snapshot is %s old", age)
	}
	var names []string
	for _, sn := range snaps {
		names = append(names, sn.Name)
	}
	backend := e.backendSnaps(t, ref)
	sort.Strings(backend)
	if strings.Join(backend, ",") != strings.Join(names, ",") {
		t.Errorf("backend holds %v, records say %v", backend, names)
	}
}

func TestOneLeaderActsAndAnotherTakesOver(t *testing.T) {
	e := setup(t, 2)
	ref := e.volume(t, "v", `{"snapshots":true,"snapshot":{"frequency":"1s","keep":100}}`)
	s1, stop1 := e.supervisor(t, "s1")
	waitFor(t, "s1 to lead", 10*time.Second, func() bool { return s1.Status().Leading })
	s2, _ := e.supervisor(t, "s2")
	waitFor(t, "a snapshot", 10*time.Second, func() bool { return s1.Status().Taken >= 2 })
	if s2.Status().Leading || s2.Status().Taken != 0 {
		t.Fatalf("s2 acted while s1 leads: %+v", s2.Status())
	}
	stop1()
	stopped := time.Now()
	waitFor(t, "s2 to take over", 5*time.Second, func() bool { return s2.Status().Leading })
	t.Logf("takeover after %s", time.Since(stopped).Round(time.Millisecond))
	waitFor(t, "s2 to snapshot", 5*time.Second, func() bool { return s2.Status().Taken >= 1 })
	snaps, _ := e.st.ListSnapshots(context.Background(), ref)
	by := map[string]int{}
	for _, sn := range snaps {
		by[sn.By]++
	}
	if by["volsupervisor s1"] == 0 || by["volsupervisor s2"] == 0 || len(by) != 2 {
		t.Errorf("snapshots by %v", by)
	}
}

// A leader that stops gives up its election lease as it goes: nothing of it
// is left in etcd for the TTL (60 s here), and the next one leads at once.
func TestStoppedLeaderResigns(t *testing.T) {
	e := setup(t, 60)
	s1, stop1 := e.supervisor(t, "s1")
	waitFor(t, "s1 to lead", 10*time.Second, func() bool { return s1.Status().Leading })
	stop1()
	resp, err := e.cli.Get(context.Background(), e.keys.Leader(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		t.Errorf("election key %s=%s left by the stopped leader", kv.Key, kv.Value)
	}
	leases, err := e.cli.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 0 {
		t.Errorf("the stopped leader left %d leases", len(leases.Leases))
	}
	s2, _ := e.supervisor(t, "s2")
	waitFor(t, "s2 to lead", 10*time.Second, func() bool { return s2.Status().Leading })
}

// A leader whose lease is gone (it was paused past its TTL) cannot act: the
// guarded transaction refuses and the backend keeps no snapshot.
func TestDeposedLeaderCannotAct(t *testing.T) {
	e := setup(t, 5)
	ref := e.volume(t, "v", `{"snapshots":false}`)
	ctx := context.Background()
	sess, err := concurrency.NewSession(e.cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	el := concurrency.NewElection(sess, e.keys.Leader())
	if err := el.Campaign(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	taker := &volops.Ops{Store: e.st, Backends: map[string]storage.Snapshotter{config.BackendLocal: e.lb}, By: "old", Timeout: time.Minute, Now: time.Now}
	h := store.Holder{Lease: sess.Lease(), Owner: "old"}
	if _, err := taker.Take(ctx, ref, h, guard); err != nil {
		t.Fatalf("leader's snapshot: %v", err)
	}
	// The lease expires (as when the process was stopped past its TTL) and a
	// new leader is elected.
	if _, err := e.cli.Revoke(ctx, sess.Lease()); err != nil {
		t.Fatal(err)
	}
	sess2, _ := concurrency.NewSession(e.cli, concurrency.WithTTL(5))
	defer sess2.Close()
	if err := concurrency.NewElection(sess2, e.keys.Leader()).Campaign(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	lease3, _ := e.cli.Grant(ctx, 30)
	h3 := store.Holder{Lease: lease3.ID, Owner: "old"}
	if _, err := taker.Take(ctx, ref, h3, guard); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("deposed leader's snapshot = %v, want ErrNotLeader", err)
	}
	if _, err := taker.Prune(ctx, ref, 1, config.Tiers{}, h3, guard); err != nil {
		t.Fatalf("prune with nothing beyond keep: %v", err)
	}
	if snaps := e.backendSnaps(t, ref); len(snaps) != 1 {
		t.Fatalf("backend snapshots %v, want only the one taken while leading", snaps)
	}
	if d, _ := e.st.Dump(ctx); d[e.keys.OpLock(ref)] != "" {
		t.Error("operation lock left behind")
	}
}

// Ephemeral volumes go once their last mount is released (a recorded
// unmount) and twice the TTL has passed without a lock; a mounted one, a
// never-mounted one and one whose host died with it mounted (no recorded
// unmount: in use until proven unmounted) stay.
func TestEphemeralVolumesRemovedWhenUnmounted(t *testing.T) {
	e := setup(t, 5)
	ctx := context.Background()
	dead := e.volumeOf(t, "dead", `"ephemeral":true`)
	held := e.volumeOf(t, "held", `"ephemeral":true`)
	fresh := e.volumeOf(t, "fresh", `"ephemeral":true`)
	keep := e.volumeOf(t, "keep", `"ephemeral":false`)
	locks := lock.New(e.cli, e.keys, 5*time.Second)
	hostA, _ := locks.Grant(ctx, "hostA", "", 30)
	hostB, _ := locks.Grant(ctx, "hostB", "", 30)
	for _, m := range []struct {
		ref   config.VolumeRef
		lease int64
		host  string
	}{{dead, hostA.ID, "hostA"}, {held, hostB.ID, "hostB"}, {keep, hostA.ID, "hostA"}} {
		if _, err := locks.Acquire(ctx, m.ref, config.MountRequest{Hostname: m.host, Lease: m.lease, MountID: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	clock := newClock(time.Now())
	s := e.supervisorAt(t, "s1", clock)
	waitFor(t, "s1 to lead", 30*time.Second, func() bool { return s.Status().Leading })
	// hostA dies: its lease expires (revoked here), its locks go.
	if err := locks.Revoke(ctx, hostA.ID); err != nil {
		t.Fatal(err)
	}
	// The held one's last mount is released.
	if _, err := locks.Release(ctx, held, config.MountRequest{Hostname: "hostB", MountID: "m"}); err != nil {
		t.Fatal(err)
	}
	clock.waitReads(t, 150)
	if s.Status().Removed != 0 || !e.exists(t, held) {
		t.Fatalf("removed within the grace after the unmount: %+v", s.Status())
	}
	clock.Add(config.RemovalGrace(5) + time.Second)
	waitFor(t, "the released ephemeral volume to go", 30*time.Second, func() bool { return !e.exists(t, held) })
	if ok, _ := e.lb.Exists(ctx, storage.Volume{Policy: held.Policy, Name: held.Name}); ok {
		t.Error("image of the removed ephemeral volume is still there")
	}
	clock.waitReads(t, 150)
	for _, ref := range []config.VolumeRef{dead, fresh, keep} {
		if !e.exists(t, ref) {
			t.Errorf("%s was removed (must stay)", ref)
		}
	}
	if u := s.Status().Unproven; len(u) != 1 || u[0].Volume != dead || u[0].Host != "hostA" {
		t.Errorf("in use until proven unmounted: %+v, want %s on hostA", u, dead)
	}
	// The count moves just after the record goes.
	waitFor(t, "the removal count", 30*time.Second, func() bool { return s.Status().Removed == 1 })
}

// Volumes unused past reclaim.unused-for go where the policy enables it; a
// locked one and one whose policy only reports stay. The status is
// published for volmaster.
func TestReclaimAndStatus(t *testing.T) {
	e := setup(t, 5)
	ctx := context.Background()
	gone := e.volumeOf(t, "gone", `"reclaim":{"unused-for":"1s","enabled":true}`)
	report := e.volumeOf(t, "report", `"reclaim":{"unused-for":"1s"}`)
	inuse := e.volumeOf(t, "inuse", `"reclaim":{"unused-for":"1s","enabled":true}`)
	locks := lock.New(e.cli, e.keys, 5*time.Second)
	host, _ := locks.Grant(ctx, "hostA", "", 30)
	if _, err := locks.Acquire(ctx, inuse, config.MountRequest{Hostname: "hostA", Lease: host.ID, MountID: "m"}); err != nil {
		t.Fatal(err)
	}
	// Past unused-for and the grace (twice the TTL) since the creation.
	s := e.supervisorAt(t, "s1", newClock(time.Now().Add(time.Hour)))
	waitFor(t, "the unused volume to be reclaimed", 10*time.Second, func() bool {
		_, err := e.st.GetVolume(ctx, gone)
		return errors.Is(err, config.ErrNotFound)
	})
	for _, ref := range []config.VolumeRef{report, inuse} {
		if _, err := e.st.GetVolume(ctx, ref); err != nil {
			t.Errorf("%s: %v (must stay)", ref, err)
		}
	}
	waitFor(t, "the status record", 10*time.Second, func() bool {
		sts, err := e.st.SupervisorStatuses(ctx)
		return err == nil && len(sts) == 1 && sts[0].Leading && sts[0].Removed == 1 && !sts[0].LastRun.IsZero()
	})
	if s.Status().Removed != 1 {
		t.Errorf("status %+v", s.Status())
	}
	ts := httptest.NewServer(s.infoHandler("scrape-secret"))
	defer ts.Close()
	// With a token, /info and /metrics need it; /healthz does not.
	for path, want := range map[string]int{"/info": 401, "/metrics": 401, "/healthz": 200} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without the token = %d, want %d", path, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("GET", ts.URL+"/info", nil)
	req.Header.Set("Authorization", "Bearer scrape-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info config.SupervisorStatus
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.Name != "s1" || !info.Leading || info.Removed != 1 {
		t.Errorf("GET /info = %+v, %v", info, err)
	}
}
