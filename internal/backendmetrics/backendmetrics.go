// Package backendmetrics is the storage backend call histogram that every
// daemon exports (volmaster: create, resize, snapshots, removal; volplugin:
// mount and unmount; volsupervisor: scheduled snapshots, pruning, removal),
// so one alert rule and one dashboard panel cover all three.
package backendmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results are the values of the result label.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// Buckets span 1 ms to about 4 min (a mkfs or a copy of a big image).
var Buckets = prometheus.ExponentialBuckets(0.001, 4, 10)

// Histogram times backend calls by backend, operation and result.
type Histogram struct {
	vec *prometheus.HistogramVec
}

// New returns a histogram named by opts (Name and Help; Buckets default to
// Buckets) with the labels backend, op and result. The error series of each
// op in ops, for every backend in backends, exist from the start at zero: a
// first failure is then an increase from 0, which increase() sees, rather
// than a new series, which it does not.
func New(opts prometheus.HistogramOpts, backends, ops []string) *Histogram {
	if opts.Buckets == nil {
		opts.Buckets = Buckets
	}
	h := &Histogram{vec: prometheus.NewHistogramVec(opts, []string{"backend", "op", "result"})}
	for _, b := range backends {
		for _, op := range ops {
			h.vec.WithLabelValues(b, op, ResultError)
		}
	}
	return h
}

// Collector is what to register.
func (h *Histogram) Collector() prometheus.Collector { return h.vec }

// Observe records one call that started at start and ended now with err.
func (h *Histogram) Observe(backend, op string, start time.Time, err error) {
	result := ResultOK
	if err != nil {
		result = ResultError
	}
	h.vec.WithLabelValues(backend, op, result).Observe(time.Since(start).Seconds())
}
