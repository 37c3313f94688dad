package volsupervisor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/metrictest"
	"github.com/volplugin/volplugin/storage"
)

// faultySnapshotter is a fault injector: while fail is set, every snapshot
// fails; while inUse is set, every snapshot finds the image in use (as Ceph
// does while another client holds its exclusive lock).
type faultySnapshotter struct {
	storage.Snapshotter
	fail  atomic.Bool
	inUse atomic.Bool
}

func (f *faultySnapshotter) CreateSnapshot(ctx context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	if f.fail.Load() {
		return storage.SnapshotInfo{}, errors.New("injected snapshot failure")
	}
	if f.inUse.Load() {
		return storage.SnapshotInfo{}, fmt.Errorf("injected: image locked by another client: %w", storage.ErrInUse)
	}
	return f.Snapshotter.CreateSnapshot(ctx, v, snap)
}

// series returns s's samples of family name by their labels (k=v,...); a
// histogram's sample count.
func series(t *testing.T, s *Supervisor, name string) map[string]float64 {
	t.Helper()
	out, err := metrictest.Samples(s.metrics.reg, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The leader reports each scheduled volume's frequency, last snapshot and
// last failure; a failure shows as a failure newer than the last success
// until a snapshot succeeds again. A standby reports none, and the leader's
// go when it stops leading.
func TestSnapshotScheduleMetrics(t *testing.T) {
	e := setup(t, 2)
	e.volume(t, "v", `{"snapshots":true,"snapshot":{"frequency":"1s","keep":100}}`)
	e.volume(t, "off", `{"snapshots":false}`)
	snaps := &faultySnapshotter{Snapshotter: e.lb}
	s1, stop1 := e.supervisorWith(t, Config{Name: "s1", Tick: 100 * time.Millisecond,
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: snaps}})
	waitFor(t, "s1 to lead", 10*time.Second, func() bool { return s1.Status().Leading })
	s2, _ := e.supervisor(t, "s2")

	const vol = "volume=p/v"
	waitFor(t, "a snapshot in the metrics", 10*time.Second, func() bool {
		return series(t, s1, "volsupervisor_snapshot_last_success_timestamp_seconds")[vol] > 0
	})
	if got := series(t, s1, "volsupervisor_snapshot_interval_seconds"); len(got) != 1 || got[vol] != 1 {
		t.Errorf("intervals %v, want only p/v at 1", got)
	}
	if got := series(t, s1, "volsupervisor_snapshot_last_failure_timestamp_seconds"); got[vol] != 0 {
		t.Errorf("failure at %v before any failed", got[vol])
	}
	if last := series(t, s1, "volsupervisor_snapshot_last_success_timestamp_seconds")[vol]; last > float64(time.Now().Unix()+1) {
		t.Errorf("last snapshot in the future: %v", last)
	}

	snaps.fail.Store(true)
	waitFor(t, "a failure newer than the last success", 10*time.Second, func() bool {
		return series(t, s1, "volsupervisor_snapshot_last_failure_timestamp_seconds")[vol] >
			series(t, s1, "volsupervisor_snapshot_last_success_timestamp_seconds")[vol]
	})
	if n := series(t, s1, "volsupervisor_backend_call_duration_seconds")["backend=local,op=snapshot,result=error"]; n < 1 {
		t.Errorf("backend snapshot errors %v, want at least 1", n)
	}
	snaps.fail.Store(false)
	waitFor(t, "a success after the failure", 10*time.Second, func() bool {
		return series(t, s1, "volsupervisor_snapshot_last_success_timestamp_seconds")[vol] >
			series(t, s1, "volsupervisor_snapshot_last_failure_timestamp_seconds")[vol]
	})
	if got := series(t, s2, "volsupervisor_snapshot_interval_seconds"); len(got) != 0 {
		t.Errorf("standby s2 reports schedules %v", got)
	}
	stop1()
	if got := series(t, s1, "volsupervisor_snapshot_interval_seconds"); len(got) != 0 {
		t.Errorf("s1 stopped leading and still reports %v", got)
	}
	waitFor(t, "s2 to report p/v", 10*time.Second, func() bool {
		return series(t, s2, "volsupervisor_snapshot_last_success_timestamp_seconds")[vol] > 0
	})
}

// A backend that finds the image in use (storage.ErrInUse) makes a
// scheduled snapshot busy, retried next round, not a failure: the error
// kinds are one family, so volsupervisor's busy check sees a backend's.
func TestBackendInUseIsBusyNotFailure(t *testing.T) {
	e := setup(t, 2)
	e.volume(t, "v", `{"snapshots":true,"snapshot":{"frequency":"1s","keep":100}}`)
	snaps := &faultySnapshotter{Snapshotter: e.lb}
	snaps.inUse.Store(true)
	s, _ := e.supervisorWith(t, Config{Name: "s1", Tick: 100 * time.Millisecond,
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: snaps}})
	const call = "backend=local,op=snapshot,result=error"
	waitFor(t, "two refused backend snapshot calls", 10*time.Second, func() bool {
		return series(t, s, "volsupervisor_backend_call_duration_seconds")[call] >= 2
	})
	if n := series(t, s, "volsupervisor_snapshots_total")["result=failed"]; n != 0 {
		t.Errorf("%v snapshots counted as failed while the image was in use, want 0 (busy)", n)
	}
	if got := series(t, s, "volsupervisor_snapshot_last_failure_timestamp_seconds")["volume=p/v"]; got != 0 {
		t.Errorf("a failure recorded at %v while the image was in use", got)
	}
	if st := s.Status(); st.LastError != "" {
		t.Errorf("status last error %q while the image was in use", st.LastError)
	}
	snaps.inUse.Store(false)
	waitFor(t, "a snapshot once the image is free", 10*time.Second, func() bool {
		return series(t, s, "volsupervisor_snapshots_total")["result=taken"] >= 1
	})
}
