// Package promtest runs Debian's Prometheus in tests: promtool, and a real
// server with its own directory, port and PID. It reads the monitoring files
// under deploy/ (alert rules, their promtool tests, the scrape
// configuration, the Grafana dashboard) and the metric names their PromQL
// uses.
package promtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Rule is one alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []Rule `json:"rules"`
	} `json:"groups"`
}

// Rules reads a Prometheus rule file.
func Rules(path string) ([]Rule, error) {
	var f ruleFile
	if err := readYAML(path, &f); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	return out, nil
}

// AlertCase is one alert_rule_test of a promtool test file.
type AlertCase struct {
	Alertname string `json:"alertname"`
	EvalTime  string `json:"eval_time"`
	ExpAlerts []any  `json:"exp_alerts"`
}

// AlertCases reads the alert_rule_test cases of a promtool test file.
func AlertCases(path string) ([]AlertCase, error) {
	var f struct {
		Tests []struct {
			AlertRuleTest []AlertCase `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := readYAML(path, &f); err != nil {
		return nil, err
	}
	var out []AlertCase
	for _, t := range f.Tests {
		out = append(out, t.AlertRuleTest...)
	}
	return out, nil
}

// Query is one query of a dashboard panel.
type Query struct {
	Panel string
	Expr  string
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// DashboardQueries reads a Grafana dashboard's panels (rows' included) and
// returns their queries. A panel other than a row without a query, or a
// query without an expression, is an error.
func DashboardQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d.Title == "" || d.UID == "" {
		return nil, fmt.Errorf("%s: no title or uid", path)
	}
	var out []Query
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if p.Type == "row" {
				if err := walk(p.Panels); err != nil {
					return err
				}
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("%s: panel %q has a query without an expression", path, p.Title)
				}
				out = append(out, Query{Panel: p.Title, Expr: t.Expr})
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, nil
}

// GrafanaVariables replaces the Grafana variables that dashboard queries
// use with what Prometheus accepts, for evaluating them outside Grafana.
func GrafanaVariables(expr, rateInterval string) string {
	return strings.NewReplacer("$__rate_interval", rateInterval, "$__interval", rateInterval).Replace(expr)
}

// UsedMetrics returns the sorted metric names that exprs use.
func UsedMetrics(exprs []string) ([]string, error) {
	var all []string
	for _, e := range exprs {
		names, err := MetricNames(e)
		if err != nil {
			return nil, err
		}
		all = append(all, names...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// Job is what ScrapeConfig points one scrape job at.
type Job struct {
	Targets []string
	// TokenFile is the bearer token's file ("" drops the job's
	// authorization).
	TokenFile string
}

// ScrapeConfig rewrites the Prometheus configuration in src (the shipped
// deploy/prometheus/prometheus.yml) for a test: each job's targets and
// token file from jobs, scrape and evaluation every interval. Everything
// else (job names, rule files, paths) stays as shipped; a shipped job that
// jobs does not name, or the reverse, is an error.
func ScrapeConfig(src []byte, jobs map[string]Job, interval string) ([]byte, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(src, &cfg); err != nil {
		return nil, err
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
	}
	global["scrape_interval"], global["evaluation_interval"] = interval, interval
	cfg["global"] = global
	scs, _ := cfg["scrape_configs"].([]any)
	seen := map[string]bool{}
	for _, sc := range scs {
		m, ok := sc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("scrape_configs: %v is not a mapping", sc)
		}
		name, _ := m["job_name"].(string)
		j, ok := jobs[name]
		if !ok {
			return nil, fmt.Errorf("job %q is not given targets", name)
		}
		seen[name] = true
		m["static_configs"] = []any{map[string]any{"targets": j.Targets}}
		if j.TokenFile == "" {
			delete(m, "authorization")
		} else {
			m["authorization"] = map[string]any{"credentials_file": j.TokenFile}
		}
	}
	for name := range jobs {
		if !seen[name] {
			return nil, fmt.Errorf("no job %q in the configuration", name)
		}
	}
	return yaml.Marshal(cfg)
}

// RuleFiles returns the rule files a Prometheus configuration names.
func RuleFiles(src []byte) ([]string, error) {
	var cfg struct {
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal(src, &cfg); err != nil {
		return nil, err
	}
	return cfg.RuleFiles, nil
}

func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}
