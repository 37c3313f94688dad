package volmaster

import (
	"bufio"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/volsupervisor"
)

// Invariant 7 at idle, measured: volmaster (Serve, with its embedded etcd)
// and volsupervisor (Serve, leading, its default 1 s rounds) plus the
// control-plane traffic of one volplugin host (lease renewals, the runtime
// long poll, global reads) over ten rounds: etcd's revision does not move.
// The figure is logged per hour.
func TestIdleRevisionGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	var daemons sync.WaitGroup
	t.Cleanup(func() { cancel(); daemons.Wait() })

	type started struct {
		api  string
		etcd []string
	}
	vmc, vmErr := make(chan started, 1), make(chan error, 1)
	daemons.Go(func() {
		vmErr <- Serve(ctx, Options{
			Listen: "127.0.0.1:0", DataDir: dataDir, MountRoot: filepath.Join(dataDir, "mnt"),
			EtcdListen: "http://127.0.0.1:0", EtcdPeerListen: "http://127.0.0.1:0",
			EtcdCompactionRetention: etcdserver.DefaultCompactionRetention, Log: quietLog(),
			Started: func(api string, eps []string) { vmc <- started{api, eps} },
		})
	})
	var vm started
	select {
	case vm = <-vmc:
	case err := <-vmErr:
		t.Fatalf("volmaster: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("volmaster did not start within a minute")
	}
	api, err := client.New(vm.api)
	if err != nil {
		t.Fatal(err)
	}
	call := func(what string, f func(context.Context) error) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		if err := f(cctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	snap, eph := config.VolumeRef{Policy: "snap", Name: "a"}, config.VolumeRef{Policy: "eph", Name: "b"}
	var lease config.HostLease
	call("setup", func(ctx context.Context) error {
		if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 3, "Timeout": 1}`)); err != nil {
			return err
		}
		for name, doc := range map[string]string{
			"snap": `{"backend":"local","create":{"size":"8MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1h","keep":2}}}`,
			"eph":  `{"backend":"local","create":{"size":"8MB"},"ephemeral":true,"reclaim":{"unused-for":"1h","enabled":true}}`,
		} {
			if _, _, err := api.PutPolicy(ctx, name, []byte(doc)); err != nil {
				return err
			}
		}
		for _, ref := range []config.VolumeRef{snap, eph} {
			if _, err := api.CreateVolume(ctx, config.VolumeRequest{Policy: ref.Policy, Name: ref.Name}); err != nil {
				return err
			}
		}
		if lease, err = api.GrantLease(ctx, "host1", ""); err != nil {
			return err
		}
		_, err = api.AcquireUse(ctx, eph, config.MountRequest{Hostname: "host1", Lease: lease.ID, MountID: "m1"})
		return err
	})

	// One volplugin host's idle traffic: renew every TTL/3 and re-read the
	// global configuration, and hold the runtime long poll.
	daemons.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = api.KeepAlive(cctx, lease.ID)
			_, _ = api.Global(cctx)
			ccancel()
		}
	})
	daemons.Go(func() {
		var since int64
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			ch, err := api.WaitRuntimes(cctx, []config.VolumeRef{snap, eph}, since, 2*time.Second)
			ccancel()
			if err == nil {
				since = ch.Revision
			}
		}
	})

	// The supervisor stops first, while its etcd still answers.
	supCtx, supCancel := context.WithCancel(ctx)
	var supDone sync.WaitGroup
	t.Cleanup(func() { supCancel(); supDone.Wait() })
	supURL, supErr := make(chan string, 1), make(chan error, 1)
	supDone.Go(func() {
		supErr <- volsupervisor.Serve(supCtx, volsupervisor.Options{
			Etcd: vm.etcd, Name: "s1", LocalDataDir: filepath.Join(dataDir, "local"), MountRoot: filepath.Join(dataDir, "mnt"),
			Log: quietLog(), Listen: "127.0.0.1:0", ListenStarted: func(u string) { supURL <- u },
		})
	})
	var sup string
	select {
	case sup = <-supURL:
	case err := <-supErr:
		t.Fatalf("volsupervisor: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("volsupervisor did not start within a minute")
	}
	rounds := func() int64 {
		t.Helper()
		resp, err := http.Get(sup + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "volsupervisor_rounds_total "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return int64(n)
			}
		}
		t.Fatal("no volsupervisor_rounds_total in /metrics")
		return 0
	}
	waitRounds := func(what string, n int64, d time.Duration) {
		t.Helper()
		from := rounds()
		waitIdle(t, what, d, func() bool { return rounds() >= from+n })
	}
	waitIdle(t, "the leader's first snapshot in its status", time.Minute, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		sts, err := api.Supervisors(cctx)
		return err == nil && len(sts) == 1 && sts[0].Leading && sts[0].Taken == 1 && len(sts[0].NextDue) == 1
	})
	waitRounds("two more rounds", 2, 30*time.Second)

	etcd, err := clientv3.New(clientv3.Config{Endpoints: vm.etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	revision := func() int64 {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		resp, err := etcd.Get(rctx, "/revision-probe")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	const idleRounds = 10
	rev0, began := revision(), time.Now()
	waitRounds("ten idle rounds", idleRounds, time.Minute)
	rev1, elapsed := revision(), time.Since(began)
	perHour := float64(rev1-rev0) / elapsed.Hours()
	t.Logf("idle volmaster + volsupervisor + one host's traffic: %d etcd revisions in %s (%d rounds) = %.0f revisions/hour; "+
		"beside these, the leader's status record is rewritten for its last-run time once per %s (%.0f/hour)",
		rev1-rev0, elapsed.Round(time.Millisecond), idleRounds, perHour, volsupervisor.DefaultStatusRefresh, time.Hour.Hours()/volsupervisor.DefaultStatusRefresh.Hours())
	if rev1 != rev0 {
		t.Errorf("etcd revision moved from %d to %d at idle", rev0, rev1)
	}
}

// waitIdle polls cond until it holds, failing the test after d.
func waitIdle(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
