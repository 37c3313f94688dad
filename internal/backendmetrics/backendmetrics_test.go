package backendmetrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counts returns each result's sample count and sum.
func counts(t *testing.T, h *Histogram) map[string]*dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 10)
	h.Collector().Collect(ch)
	close(ch)
	out := map[string]*dto.Histogram{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "result" {
				out[l.GetValue()] = pb.GetHistogram()
			}
		}
	}
	return out
}

func TestObserveCountsByResultFromZero(t *testing.T) {
	h := New(prometheus.HistogramOpts{Name: "x_backend_call_duration_seconds", Help: "h"}, []string{"local"}, []string{"mount"})
	c := counts(t, h)
	if len(c) != 1 || c[ResultError] == nil || c[ResultError].GetSampleCount() != 0 {
		t.Fatalf("at start: %v, want only the error series, at 0", c)
	}
	h.Observe("local", "mount", time.Now().Add(-2*time.Second), nil)
	h.Observe("local", "mount", time.Now(), errors.New("boom"))
	h.Observe("local", "mount", time.Now(), errors.New("boom"))
	c = counts(t, h)
	if c[ResultOK].GetSampleCount() != 1 || c[ResultOK].GetSampleSum() < 2 || c[ResultError].GetSampleCount() != 2 {
		t.Errorf("ok %d calls (%.1fs), error %d calls; want 1 (>= 2s) and 2",
			c[ResultOK].GetSampleCount(), c[ResultOK].GetSampleSum(), c[ResultError].GetSampleCount())
	}
}
