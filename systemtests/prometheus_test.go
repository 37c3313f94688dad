package systemtests

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/promtest"
)

// The monitoring files operators deploy (deploy/), as shipped.
const (
	deployScrape    = "../deploy/prometheus/prometheus.yml"
	deployAlerts    = "../deploy/prometheus/alerts.yml"
	deployDashboard = "../deploy/grafana/volplugin.json"
)

// Debian's Prometheus scrapes volmaster (run with --auth, through a
// read-only token), volplugin and volsupervisor (through their metrics
// tokens) with the shipped scrape configuration and loads the shipped alert
// rules. Once a volume was created, mounted, written and snapshotted, it
// holds every metric the rules and the dashboard use, every rule evaluates
// without error, every dashboard query evaluates, and on this healthy
// cluster no alert fires.
func TestPrometheusScrapesEveryDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	prom, _ := promtest.Tools(t)
	began := time.Now()
	data := t.TempDir()
	vm := startVolmaster(t, data, "--auth")
	admin := strings.TrimSpace(readFile(t, filepath.Join(data, "admin.token")))
	// A frequency no healthy run outlasts: the first snapshot is due at once.
	policy := `{"backend":"local","create":{"size":"16MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"10m","keep":5}}}`
	if _, e, code := volcli(t, vm.URL, policy, "--token", admin, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	token := func(args ...string) string {
		t.Helper()
		out, e, code := volcli(t, vm.URL, "", append([]string{"--token", admin, "token", "create"}, args...)...)
		if code != 0 {
			t.Fatalf("token create %v: %s", args, e)
		}
		return out
	}
	hostTok, readTok, metricsTok := filepath.Join(data, "host.token"), filepath.Join(data, "prometheus.token"), filepath.Join(data, "metrics.token")
	writeFile(t, hostTok, token("--role", "host", "--host", "hostA", "--policy", "p"))
	writeFile(t, readTok, token("--role", "read-only", "--description", "prometheus"))
	writeFile(t, metricsTok, "scrape-secret\n")

	vp := startVolplugin(t, vm, data, "vpsys-prom", "hostA", "--socket-dir", filepath.Join(data, "plugins"),
		"--token-file", hostTok, "--metrics-token-file", metricsTok)
	certs := filepath.Join(data, "sup")
	if out, err := exec.Command(filepath.Join(binDir, "volmaster"), "etcd-client-cert", "--data-dir", data, "--name", "s1", "--out", certs).CombinedOutput(); err != nil {
		t.Fatalf("volmaster etcd-client-cert: %v\n%s", err, out)
	}
	sup := startProc(t, "volsupervisor", []string{"--etcd", vm.EtcdURL, "--etcd-ca", filepath.Join(certs, "ca.crt"),
		"--etcd-cert", filepath.Join(certs, "s1.crt"), "--etcd-key", filepath.Join(certs, "s1.key"), "--name", "s1",
		"--listen", "127.0.0.1:0", "--metrics-token-file", metricsTok,
		"--local-data-dir", filepath.Join(data, "local"), "--mount-root", filepath.Join(data, "mnt")}, "volsupervisor status", "volsupervisor")

	pc := newPluginClient(vp.lines["volplugin socket"])
	if e, _ := pc.call(t, "Create", `{"Name":"p/v"}`)["Err"].(string); e != "" {
		t.Fatalf("create: %s", e)
	}
	mnt, _ := pc.call(t, "Mount", `{"Name":"p/v","ID":"m1"}`)["Mountpoint"].(string)
	if mnt == "" {
		t.Fatal("mount failed")
	}
	t.Cleanup(func() { pc.call(t, "Unmount", `{"Name":"p/v","ID":"m1"}`) })
	writeFile(t, filepath.Join(mnt, "data"), strings.Repeat("x", 1<<16))
	if _, e, code := volcli(t, vm.URL, "", "--token", admin, "volume", "snapshot", "take", "p/v"); code != 0 {
		t.Fatalf("snapshot take: %s", e)
	}

	host := func(u string) string {
		t.Helper()
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			t.Fatalf("URL %q: %v", u, err)
		}
		return p.Host
	}
	shipped, err := os.ReadFile(deployScrape)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := promtest.ScrapeConfig(shipped, map[string]promtest.Job{
		"volmaster":     {Targets: []string{host(vm.URL)}, TokenFile: readTok},
		"volplugin":     {Targets: []string{host(vp.lines["volplugin metrics"])}, TokenFile: metricsTok},
		"volsupervisor": {Targets: []string{host(sup.lines["volsupervisor status"])}, TokenFile: metricsTok},
	}, "1s")
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(deployAlerts)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := promtest.Rules(deployAlerts)
	if err != nil {
		t.Fatal(err)
	}
	queries, err := promtest.DashboardQueries(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
	}
	for _, q := range queries {
		exprs = append(exprs, q.Expr)
	}
	used, err := promtest.UsedMetrics(exprs)
	if err != nil {
		t.Fatal(err)
	}

	srv := promtest.Start(t, prom, cfg, map[string][]byte{"alerts.yml": alerts})
	ctx := context.Background()
	var missing, problems []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing, problems = nil, nil
		names, err := srv.MetricNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range used {
			if !slices.Contains(names, n) {
				missing = append(missing, n)
			}
		}
		targets, err := srv.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			if tg.Health != "up" {
				problems = append(problems, fmt.Sprintf("target %s %s: %s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError))
			}
		}
		if len(targets) != 3 {
			problems = append(problems, fmt.Sprintf("%d targets, want 3", len(targets)))
		}
		states, err := srv.RuleStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range states {
			if r.Health != "ok" {
				problems = append(problems, fmt.Sprintf("rule %s: %s %s", r.Name, r.Health, r.LastError))
			}
		}
		if len(states) != len(rules) {
			problems = append(problems, fmt.Sprintf("%d rules loaded, alerts.yml has %d", len(states), len(rules)))
		}
		if len(missing) == 0 && len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s:\nmetrics the rules or the dashboard use that Prometheus does not have: %v\n%s\nprometheus log:\n%s",
				missing, strings.Join(problems, "\n"), srv.Logs())
		}
		time.Sleep(250 * time.Millisecond) // polling interval
	}
	t.Logf("Prometheus holds all %d metrics the rules and the dashboard use, after %s", len(used), time.Since(began).Round(100*time.Millisecond))

	for _, q := range queries {
		if _, err := srv.Query(ctx, promtest.GrafanaVariables(q.Expr, "5s")); err != nil {
			t.Errorf("dashboard panel %q: %v", q.Panel, err)
		}
	}
	firing, err := srv.Query(ctx, `ALERTS{alertstate="firing"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range firing {
		t.Errorf("alert firing on a healthy cluster: %v", a.Metric)
	}
	t.Logf("test ran %s", time.Since(began).Round(100*time.Millisecond))
}
