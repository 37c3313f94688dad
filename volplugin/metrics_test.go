package volplugin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/metrictest"
)

// sample returns the value of the first sample of family name in fams whose
// labels include every k=v of labels (a histogram's sample count), and
// whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		return metrictest.Value(m), true
	}
	return 0, false
}

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// scrapeHost reads a running volplugin's GET /metrics.
func (h *host) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(h.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func must(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	if v, ok := sample(fams, name, labels...); !ok || v != want {
		t.Errorf("%s%v = %v (present: %v), want %v", name, labels, v, ok, want)
	}
}

// The lease gauges follow the real renewals through volmaster: granted, then
// renewed every TTL/3; with volmaster gone the last renewal stays where it
// was (an alert sees it age), failures count and self-health turns.
func TestLeaseMetricsFollowRenewals(t *testing.T) {
	c := startCluster(t) // TTL 2 s
	d, err := New(Config{API: c.api, Host: "hostA", Log: quiet(), Health: HealthLimits{RenewFailures: 1}})
	if err != nil {
		t.Fatal(err)
	}
	fams := gather(t, d.metrics.reg)
	must(t, fams, 0, "volplugin_lease_renewed_timestamp_seconds")
	must(t, fams, 0, "volplugin_lease_ttl_seconds")
	must(t, fams, 1, "volplugin_healthy")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.lease.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	renewed := func() float64 {
		v, _ := sample(gather(t, d.metrics.reg), "volplugin_lease_renewed_timestamp_seconds")
		return v
	}
	first := 0.0
	waitUntil(t, "the lease granted", 10*time.Second, func() bool { first = renewed(); return first > 0 })
	must(t, gather(t, d.metrics.reg), 2, "volplugin_lease_ttl_seconds")
	if now := float64(time.Now().Unix()); first > now+1 || first < now-5 {
		t.Errorf("renewed at %v, now is %v", first, now)
	}
	waitUntil(t, "a renewal", 10*time.Second, func() bool { return renewed() > first })

	c.down()
	downAt := float64(time.Now().UnixNano()) / 1e9
	waitUntil(t, "a failed renewal", 10*time.Second, func() bool {
		v, _ := sample(gather(t, d.metrics.reg), "volplugin_lease_renew_failures_total")
		return v >= 1
	})
	fams = gather(t, d.metrics.reg)
	if last, _ := sample(fams, "volplugin_lease_renewed_timestamp_seconds"); last > downAt {
		t.Errorf("renewed at %v, after volmaster went down at %v", last, downAt)
	}
	must(t, fams, 0, "volplugin_healthy")
}

// A mount whose lock another host took counts in volplugin_mounts_lock_lost
// for as long as it stays mounted here.
func TestLockLostGauge(t *testing.T) {
	c := startCluster(t)
	d, err := New(Config{API: c.api, Host: "hostA", Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	must(t, gather(t, d.metrics.reg), 0, "volplugin_mounts_lock_lost")
	d.mu.Lock()
	d.mounts[config.VolumeRef{Policy: "p", Name: "a"}] = &mounted{ids: map[string]bool{"1": true}}
	d.mounts[config.VolumeRef{Policy: "p", Name: "b"}] = &mounted{ids: map[string]bool{"1": true}, lost: "locked by host hostB"}
	d.mu.Unlock()
	fams := gather(t, d.metrics.reg)
	must(t, fams, 1, "volplugin_mounts_lock_lost")
	must(t, fams, 2, "volplugin_mounts_active")
	// The series alerts watch exist before the first event.
	must(t, fams, 0, "volplugin_mounts_refused_total", "reason=health")
	must(t, fams, 0, "volplugin_mounts_total", "result=error")
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
