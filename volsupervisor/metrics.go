package volsupervisor

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are volsupervisor's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg       *prometheus.Registry
	snapshots *prometheus.CounterVec
	pruned    prometheus.Counter
	removed   prometheus.Counter
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
	}
	m.reg.MustRegister(m.snapshots, m.pruned, m.removed,
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
