package promtest

import (
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`up`, "up"},
		{`up{job=~"volmaster|volplugin"} == 0`, "up"},
		{`time() - volplugin_lease_renewed_timestamp_seconds > volplugin_lease_ttl_seconds * 2 / 3 and volplugin_lease_ttl_seconds > 0`,
			"volplugin_lease_renewed_timestamp_seconds volplugin_lease_ttl_seconds"},
		{`sum by (job, instance, backend, op) (increase(a_count{result="error"}[10m])) > 0 or sum without (reason) (b[5m])`, "a_count b"},
		{`sum(rate(x[5m])) by (instance)`, "x"},
		{`histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))`, "h_bucket"},
		{`rate(x[${interval}]) + rate(y[[[interval]]])`, "x y"},
		{`(sum(volsupervisor_leader) or vector(0)) < 1`, "volsupervisor_leader"},
		{`a / on (instance) group_left (version, host) b`, "a b"},
		{`a * ignoring(code) group_right b`, "a b"},
		{`{__name__="via_matcher", job="x"}`, "via_matcher"},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, "m"},
		{`max_over_time(m[1h:5m]) offset 1d`, "m"},
		{`m @ start()`, "m"},
		{`count_values("v", build_info) > bool 1e-3`, "build_info"},
		{`SUM BY (job) (m) > 0x1F`, "m"},
		{`1 + 2.5e+3 - .5`, ""},
		{`foo:recorded:rate5m # a comment naming not_a_metric`, "foo:recorded:rate5m"},
		{`topk(3, m) unless on() (n)`, "m n"},
		{`a{l="}"} + b{l='\''} + c`, "a b c"},
	} {
		got, err := MetricNames(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%s:\n  got  %q\n  want %q", c.expr, s, c.want)
		}
	}
}

func TestMetricNamesRefusesWhatItCannotRead(t *testing.T) {
	for _, expr := range []string{
		`{__name__=~"vol.*"}`,
		`sum(rate(x[5m])`,
		`x{a="b"`,
		`x]`,
		`x{a="b}`,
		`rate(x[${interval])`,
	} {
		if got, err := MetricNames(expr); err == nil {
			t.Errorf("%s: %v, want an error", expr, got)
		}
	}
}
