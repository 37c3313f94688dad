// Package metrictest reads a Prometheus registry's samples in tests: one
// place for the walk over gathered families that the daemons' metric tests
// share.
package metrictest

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Samples returns the samples of family name by their labels, written
// k=v,k=v in the registry's order ("" for none).
func Samples(g prometheus.Gatherer, name string) (map[string]float64, error) {
	all, err := Scrape(g, name)
	if err != nil {
		return nil, err
	}
	return all[name], nil
}

// Scrape returns the samples of each family in names, as Samples does,
// from one gathering: figures read together, like a scraper's, so that two
// of them taken from one source can be compared.
func Scrape(g prometheus.Gatherer, names ...string) (map[string]map[string]float64, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]float64{}
	for _, n := range names {
		out[n] = map[string]float64{}
	}
	for _, f := range fams {
		samples, ok := out[f.GetName()]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			samples[strings.Join(kv, ",")] = Value(m)
		}
	}
	return out, nil
}

// Value is a sample's value: a gauge's, counter's or untyped value, or a
// histogram's sample count.
func Value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}
