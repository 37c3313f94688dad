package volsupervisor

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/backendmetrics"
)

// metrics are volsupervisor's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg       *prometheus.Registry
	snapshots *prometheus.CounterVec
	pruned    prometheus.Counter
	removed   prometheus.Counter
	backend   *backendmetrics.Histogram
}

func newMetrics(s *Supervisor) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volsupervisor_snapshots_total", Help: "Scheduled snapshots by result (taken, failed).",
		}, []string{"result"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "volsupervisor_snapshots_pruned_total", Help: "Snapshots removed by keep/tiers retention.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "volsupervisor_volumes_removed_total", Help: "Ephemeral or reclaimed volumes removed.",
		}),
		backend: backendmetrics.New(prometheus.HistogramOpts{
			Name: "volsupervisor_backend_call_duration_seconds",
			Help: "Storage backend call latency (snapshots, pruning, removals, trash purges) by backend, operation and result.",
		}, backendNames(s.cfg), []string{"snapshot", "remove-snapshot", "destroy", "trash", "purge"}),
	}
	m.snapshots.WithLabelValues("taken")
	m.snapshots.WithLabelValues("failed")
	m.reg.MustRegister(m.snapshots, m.pruned, m.removed, m.backend.Collector(), &scheduleCollector{s: s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "volsupervisor_rounds_total", Help: "Rounds of work done while leading."},
			func() float64 { return float64(s.rounds.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "volsupervisor_status_writes_total", Help: "Status records written to etcd (only when the status changed).",
		}, func() float64 { return float64(s.statusWrites.Load()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volsupervisor_leader", Help: "1 while this supervisor leads."},
			func() float64 {
				if s.Status().Leading {
					return 1
				}
				return 0
			}),
	)
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// backendNames are the backends this supervisor can call.
func backendNames(cfg Config) []string {
	names := map[string]bool{}
	for n := range cfg.Snapshotters {
		names[n] = true
	}
	for n := range cfg.Backends {
		names[n] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// snapshotSchedule is the leader's view of one volume's scheduled snapshots.
type snapshotSchedule struct {
	every time.Duration
	// last is the newest snapshot (zero: none yet), failed the last failed
	// attempt in this leadership term (zero: none).
	last, failed time.Time
}

var (
	descSnapInterval = prometheus.NewDesc("volsupervisor_snapshot_interval_seconds",
		"The snapshot frequency of each volume with scheduled snapshots (leader only).", []string{"volume"}, nil)
	descSnapLast = prometheus.NewDesc("volsupervisor_snapshot_last_success_timestamp_seconds",
		"When each volume with scheduled snapshots was last snapshotted (Unix time; 0: never; leader only).", []string{"volume"}, nil)
	descSnapFailed = prometheus.NewDesc("volsupervisor_snapshot_last_failure_timestamp_seconds",
		"When a scheduled snapshot of each volume last failed in this leadership term (Unix time; 0: none; leader only).", []string{"volume"}, nil)
)

// scheduleCollector reports the snapshot schedule of every volume, one
// series each: only the leader has them, and they go when it steps down.
type scheduleCollector struct{ s *Supervisor }

func (c *scheduleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSnapInterval
	ch <- descSnapLast
	ch <- descSnapFailed
}

func (c *scheduleCollector) Collect(ch chan<- prometheus.Metric) {
	for ref, sc := range c.s.snapshotSchedules() {
		v := ref.String()
		ch <- prometheus.MustNewConstMetric(descSnapInterval, prometheus.GaugeValue, sc.every.Seconds(), v)
		ch <- prometheus.MustNewConstMetric(descSnapLast, prometheus.GaugeValue, unixSeconds(sc.last), v)
		ch <- prometheus.MustNewConstMetric(descSnapFailed, prometheus.GaugeValue, unixSeconds(sc.failed), v)
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// snapshotSchedules returns a copy of the leader's schedules.
func (s *Supervisor) snapshotSchedules() map[config.VolumeRef]snapshotSchedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.schedules)
}

func (s *Supervisor) setSnapshotSchedules(m map[config.VolumeRef]snapshotSchedule) {
	s.mu.Lock()
	s.schedules = m
	s.mu.Unlock()
}
