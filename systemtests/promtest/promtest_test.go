package promtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const shipped = `
global:
  scrape_interval: 15s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: a
    authorization:
      credentials_file: /etc/a.token
    static_configs:
      - targets: ["example:1"]
  - job_name: b
    static_configs:
      - targets: ["example:2"]
`

func TestScrapeConfigRewritesTargetsAndTokens(t *testing.T) {
	out, err := ScrapeConfig([]byte(shipped), map[string]Job{
		"a": {Targets: []string{"127.0.0.1:9"}},
		"b": {Targets: []string{"127.0.0.1:10", "127.0.0.1:11"}, TokenFile: "/tmp/b.token"},
	}, "1s")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global        map[string]string `json:"global"`
		RuleFiles     []string          `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string            `json:"job_name"`
			Authorization map[string]string `json:"authorization"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(out, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := fmt.Sprint(cfg.Global["scrape_interval"], " ", cfg.Global["evaluation_interval"], " ", cfg.RuleFiles)
	for _, sc := range cfg.ScrapeConfigs {
		got += fmt.Sprint(" ", sc.JobName, sc.StaticConfigs[0].Targets, sc.Authorization["credentials_file"])
	}
	if want := "1s 1s [alerts.yml] a[127.0.0.1:9] b[127.0.0.1:10 127.0.0.1:11]/tmp/b.token"; got != want {
		t.Errorf("got  %s\nwant %s\n%s", got, want, out)
	}
	if _, err := ScrapeConfig([]byte(shipped), map[string]Job{"a": {}}, "1s"); err == nil {
		t.Error("job b left without targets: no error")
	}
	if _, err := ScrapeConfig([]byte(shipped), map[string]Job{"a": {}, "b": {}, "c": {}}, "1s"); err == nil {
		t.Error("job c not in the configuration: no error")
	}
}

func TestDashboardQueries(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "d.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	qs, err := DashboardQueries(write(`{"title":"t","uid":"u","panels":[
		{"type":"row","title":"r","panels":[{"type":"stat","title":"in row","targets":[{"expr":"a"}]}]},
		{"type":"timeseries","title":"p","targets":[{"expr":"rate(b[$__rate_interval])"},{"expr":"c"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(qs); got != "[{in row a} {p rate(b[$__rate_interval])} {p c}]" {
		t.Errorf("queries %s", got)
	}
	for _, bad := range []string{
		`{"title":"t","uid":"u","panels":[{"type":"stat","title":"empty"}]}`,
		`{"title":"t","uid":"u","panels":[{"type":"stat","title":"blank","targets":[{"expr":" "}]}]}`,
		`{"title":"t","panels":[{"type":"stat","title":"x","targets":[{"expr":"a"}]}]}`,
		`{"title":"t","uid":"u","panels":[`,
	} {
		if qs, err := DashboardQueries(write(bad)); err == nil {
			t.Errorf("%s: %v, want an error", bad, qs)
		}
	}
	if got := GrafanaVariables("rate(x[$__rate_interval]) + rate(y[$__interval])", "5s"); got != "rate(x[5s]) + rate(y[5s])" {
		t.Errorf("GrafanaVariables: %s", got)
	}
}

// A real Prometheus scrapes a target, answers queries, and is stopped by
// its PID.
func TestServerScrapesAndStops(t *testing.T) {
	prom, _ := Tools(t)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE promtest_probe gauge\npromtest_probe 42")
	}))
	defer target.Close()
	cfg := fmt.Sprintf("scrape_configs:\n  - job_name: probe\n    scrape_interval: 1s\n    static_configs:\n      - targets: [%q]\n",
		strings.TrimPrefix(target.URL, "http://"))
	s := Start(t, prom, []byte(cfg), nil)
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.Query(ctx, "promtest_probe")
		if err == nil && len(got) == 1 && got[0].Value[1] == "42" && got[0].Metric["job"] == "probe" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("promtest_probe not scraped: %v %v\n%s", got, err, s.Logs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if names, err := s.MetricNames(ctx); err != nil || !strings.Contains(strings.Join(names, " "), "promtest_probe") {
		t.Errorf("metric names %v, %v", names, err)
	}
	if ts, err := s.Targets(ctx); err != nil || len(ts) != 1 || ts[0].Health != "up" {
		t.Errorf("targets %+v, %v", ts, err)
	}
	if _, err := s.Query(ctx, "sum("); err == nil {
		t.Error("a bad query: no error")
	}
	pid := s.cmd.Process.Pid
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("PID %d after stop: %v", pid, err)
	}
}
