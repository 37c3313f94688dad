package volplugin

import (
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/internal/backendmetrics"
)

// metrics are volplugin's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg           *prometheus.Registry
	mounts        *prometheus.CounterVec
	unmounts      *prometheus.CounterVec
	mountTime     prometheus.Histogram
	unmountTime   prometheus.Histogram
	locks         *prometheus.CounterVec
	locksLost     prometheus.Counter
	leasesLost    prometheus.Counter
	renewFailures prometheus.Counter
	refused       *prometheus.CounterVec
	backend       *backendmetrics.Histogram
}

// Reasons of the refused-mounts counter.
const (
	refusedHealth      = "health"
	refusedMaintenance = "maintenance"
)

func newMetrics(d *Driver) *metrics {
	buckets := prometheus.ExponentialBuckets(0.005, 3, 10)
	m := &metrics{
		reg: prometheus.NewRegistry(),
		mounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volplugin_mounts_total", Help: "Docker Mount requests by result.",
		}, []string{"result"}),
		unmounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volplugin_unmounts_total", Help: "Docker Unmount requests by result.",
		}, []string{"result"}),
		mountTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "volplugin_mount_duration_seconds", Help: "Mount latency (lock, map, mkfs, mount).", Buckets: buckets,
		}),
		unmountTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "volplugin_unmount_duration_seconds", Help: "Unmount latency (unmount, unmap, unlock).", Buckets: buckets,
		}),
		locks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volplugin_lock_acquisitions_total", Help: "Mount lock acquisitions by result.",
		}, []string{"result"}),
		locksLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "volplugin_locks_lost_total", Help: "Mount locks another host took while this host's lease was gone.",
		}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "volplugin_leases_lost_total", Help: "Host leases lost (their TTL passed without a renewal, or volmaster said they expired): every lock on one was gone until put on the next lease.",
		}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "volplugin_lease_renew_failures_total", Help: "Failed host-lease renewals.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volplugin_mounts_refused_total",
			Help: "New mounts refused without trying, by reason: health (self-health limits passed), maintenance (--maintenance).",
		}, []string{"reason"}),
		backend: backendmetrics.New(prometheus.HistogramOpts{
			Name: "volplugin_backend_call_duration_seconds",
			Help: "Storage backend call latency (map and mount, unmount and unmap, fencing) by backend, operation and result.",
		}, slices.Sorted(maps.Keys(d.cfg.Mounters)), []string{"mount", "unmount"}),
	}
	// Every label value a rule watches exists from the start, so its first
	// increase is seen.
	for _, r := range []string{"ok", "error"} {
		m.mounts.WithLabelValues(r)
		m.unmounts.WithLabelValues(r)
		m.locks.WithLabelValues(r)
	}
	m.refused.WithLabelValues(refusedHealth)
	m.refused.WithLabelValues(refusedMaintenance)
	m.reg.MustRegister(m.mounts, m.unmounts, m.mountTime, m.unmountTime, m.locks, m.locksLost, m.leasesLost, m.renewFailures,
		m.refused, m.backend.Collector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volplugin_mounts_active", Help: "Volumes mounted on this host."},
			func() float64 { return float64(len(d.Info().Mounts)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volplugin_mounts_lock_lost",
			Help: "Volumes mounted on this host whose mount lock another host holds (LOCK LOST): this host must not write to them."},
			d.lockLostCount),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volplugin_healthy",
			Help: "1 while volplugin is within its self-health limits; 0 while it refuses new mounts for passing one (see /healthz)."},
			func() float64 {
				if st, _ := d.health.check(); st.Healthy {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volplugin_lease_renewed_timestamp_seconds",
			Help: "When the host lease was last granted or renewed (Unix time; 0: never since start). It is renewed every TTL/3."},
			func() float64 {
				if _, _, renewed := d.lease.State(); !renewed.IsZero() {
					return float64(renewed.UnixNano()) / 1e9
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "volplugin_lease_ttl_seconds",
			Help: "The host lease's TTL (0: no lease granted since start)."},
			func() float64 { _, ttl, _ := d.lease.State(); return ttl.Seconds() }),
		&volumeCollector{d: d},
	)
	return m
}

// lockLostCount is the number of mounts here whose lock another host holds.
func (d *Driver) lockLostCount() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, m := range d.mounts {
		if m.lost != "" {
			n++
		}
	}
	return float64(n)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// volumeCollector reports space (statfs of the mount) and I/O (the block
// device's kernel counters) of every volume mounted here, read at scrape time.
type volumeCollector struct{ d *Driver }

var (
	descUsed    = prometheus.NewDesc("volplugin_volume_used_bytes", "Space used on a mounted volume.", []string{"volume"}, nil)
	descFree    = prometheus.NewDesc("volplugin_volume_free_bytes", "Space free on a mounted volume.", []string{"volume"}, nil)
	descRead    = prometheus.NewDesc("volplugin_volume_read_bytes_total", "Bytes read from a mounted volume's device.", []string{"volume"}, nil)
	descWritten = prometheus.NewDesc("volplugin_volume_written_bytes_total", "Bytes written to a mounted volume's device.", []string{"volume"}, nil)
	descReads   = prometheus.NewDesc("volplugin_volume_reads_total", "Read operations on a mounted volume's device.", []string{"volume"}, nil)
	descWrites  = prometheus.NewDesc("volplugin_volume_writes_total", "Write operations on a mounted volume's device.", []string{"volume"}, nil)
)

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUsed, descFree, descRead, descWritten, descReads, descWrites} {
		ch <- d
	}
}

func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	type mnt struct{ name, path, device string }
	c.d.mu.Lock()
	var ms []mnt
	for ref, m := range c.d.mounts {
		ms = append(ms, mnt{ref.String(), m.path, m.device})
	}
	c.d.mu.Unlock()
	for _, m := range ms {
		var st unix.Statfs_t
		if unix.Statfs(m.path, &st) == nil {
			bs := float64(st.Bsize)
			ch <- prometheus.MustNewConstMetric(descUsed, prometheus.GaugeValue, float64(st.Blocks-st.Bfree)*bs, m.name)
			ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(st.Bavail)*bs, m.name)
		}
		if s, ok := blockStat(m.device); ok {
			ch <- prometheus.MustNewConstMetric(descReads, prometheus.CounterValue, s[0], m.name)
			ch <- prometheus.MustNewConstMetric(descRead, prometheus.CounterValue, s[2]*512, m.name)
			ch <- prometheus.MustNewConstMetric(descWrites, prometheus.CounterValue, s[4], m.name)
			ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, s[6]*512, m.name)
		}
	}
}

// blockStat reads /sys/class/block/<dev>/stat: reads, merges, sectors read,
// ticks, writes, merges, sectors written, ... (sectors are 512 bytes).
func blockStat(device string) ([]float64, bool) {
	if device == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(device), "stat"))
	if err != nil {
		return nil, false
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return nil, false
	}
	out := make([]float64, 7)
	for i := range out {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// since returns the seconds since start, for histograms.
func since(start time.Time) float64 { return time.Since(start).Seconds() }
