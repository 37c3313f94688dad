package volmaster

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/volplugin/volplugin/internal/backendmetrics"
)

// metrics are volmaster's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	backend  *backendmetrics.Histogram
}

// backendOps are the backend calls volmaster makes (through volops too).
var backendOps = []string{"create", "resize", "copy", "list-snapshots", "exists", "snapshot", "remove-snapshot", "destroy", "trash", "restore", "purge"}

func newMetrics(s *Server, backends []string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volmaster_http_requests_total",
			Help: "API requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "volmaster_http_request_duration_seconds",
			Help:    "API request latency by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"route", "method"}),
		backend: backendmetrics.New(prometheus.HistogramOpts{
			Name: "volmaster_backend_call_duration_seconds",
			Help: "Storage backend call latency by backend, operation and result.",
		}, backends, backendOps),
	}
	m.reg.MustRegister(m.requests, m.latency, m.backend.Collector(), newEtcdCollector(s.store),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volmaster_volumes", Help: "Volumes known to volmaster."},
			func() float64 { v, _ := s.cache.Counts(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volmaster_policies", Help: "Policies known to volmaster."},
			func() float64 { _, p := s.cache.Counts(); return float64(p) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "volmaster_audit_refused_total",
			Help: "Requests refused before they ran (401, 403), kept apart from the audit log (GET /v1/audit?refused=true)."},
			func() float64 { n, _ := s.audit.refusals(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "volmaster_audit_refusals_not_logged_total",
			Help: "Refused requests left out of the log by its rate limit (10/s)."},
			func() float64 { _, n := s.audit.refusals(); return float64(n) }),
	)
	return m
}

// instrument counts and times one route's requests.
func (m *metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
		m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	}
}

// observeBackend records one backend call.
func (m *metrics) observeBackend(backend, op string, start time.Time, err error) {
	m.backend.Observe(backend, op, start, err)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
