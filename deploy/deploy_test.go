package deploy

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/internal/clidoc"
	"github.com/volplugin/volplugin/internal/volcli"
	"github.com/volplugin/volplugin/systemtests/promtest"
)

const (
	alertsFile    = "prometheus/alerts.yml"
	alertTests    = "prometheus/alerts_test.yml"
	scrapeFile    = "prometheus/prometheus.yml"
	dashboardFile = "grafana/volplugin.json"
	runbooks      = "../docs/troubleshooting.md"
	runbookBase   = "https://github.com/volplugin/volplugin/blob/main/docs/troubleshooting.md#"
)

// jobs are the scrape jobs alerts.yml and the dashboard rely on.
var jobs = []string{"volmaster", "volplugin", "volsupervisor"}

func rules(t *testing.T) []promtest.Rule {
	t.Helper()
	rs, err := promtest.Rules(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	_, tool := promtest.Tools(t)
	out, err := promtest.Promtool(context.Background(), tool, dir, args...)
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// promtool check rules and test rules: the rules are valid and behave as
// their unit tests say.
func TestAlertRulesPassPromtool(t *testing.T) {
	t.Logf("promtool check rules:\n%s", promtool(t, ".", "check", "rules", alertsFile))
	t.Logf("promtool test rules:\n%s", promtool(t, "prometheus", "test", "rules", filepath.Base(alertTests)))
}

// Every alert has a unit test where it fires and one where it stays silent,
// and every test is about an alert that exists.
func TestEveryAlertIsUnitTested(t *testing.T) {
	cases, err := promtest.AlertCases(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		if len(c.ExpAlerts) > 0 {
			fires[c.Alertname] = true
		} else {
			silent[c.Alertname] = true
		}
	}
	alerts := map[string]bool{}
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if !fires[r.Alert] {
			t.Errorf("%s: no test where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no test where it stays silent", r.Alert)
		}
	}
	for _, c := range cases {
		if !alerts[c.Alertname] {
			t.Errorf("%s tests alert %s, which alerts.yml does not have", alertTests, c.Alertname)
		}
	}
}

var volcliCmd = regexp.MustCompile("`(volcli [^`]+)`")

// Every alert has a severity, a summary, a description naming a volcli
// command that exists, and a runbook: the section of docs/troubleshooting.md
// named after it, under "## Alerts", which lists no other.
func TestAlertsHaveRunbooksAndVolcliCommands(t *testing.T) {
	doc, err := os.ReadFile(runbooks)
	if err != nil {
		t.Fatal(err)
	}
	sections := alertSections(t, string(doc))
	app := volcli.App(nil, io.Discard, io.Discard)
	alerts := map[string]bool{}
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.Alert)
		}
		cmds := volcliCmd.FindAllStringSubmatch(r.Annotations["description"], -1)
		if len(cmds) == 0 {
			t.Errorf("%s: the description names no `volcli ...` command", r.Alert)
		}
		for _, c := range cmds {
			if err := checkVolcli(app, c[1]); err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
		}
		if want := runbookBase + clidoc.Anchor(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if strings.TrimSpace(sections[r.Alert]) == "" {
			t.Errorf("%s: no runbook: docs/troubleshooting.md has no section \"### %s\" (with text) under \"## Alerts\"", r.Alert, r.Alert)
		}
	}
	for name := range sections {
		if !alerts[name] {
			t.Errorf("docs/troubleshooting.md has a runbook for %s, which alerts.yml does not have", name)
		}
	}
}

// alertSections returns the ### sections under "## Alerts", by heading.
func alertSections(t *testing.T, doc string) map[string]string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## Alerts\n")
	if !ok {
		t.Fatal(`docs/troubleshooting.md has no "## Alerts" section`)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	out := map[string]string{}
	parts := strings.Split("\n"+rest, "\n### ")
	for _, p := range parts[1:] {
		head, body, _ := strings.Cut(p, "\n")
		out[head] = body
	}
	return out
}

// checkVolcli checks that line ("volcli volume get POLICY/NAME") names a
// volcli command and only flags it has.
func checkVolcli(app *cli.App, line string) error {
	words := strings.Fields(line)[1:]
	cmds := app.Commands
	var cmd *cli.Command
	i := 0
	for ; i < len(words); i++ {
		next := findCommand(cmds, words[i])
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return fmt.Errorf("%q is not a volcli command", line)
	}
	for _, w := range words[i:] {
		if !strings.HasPrefix(w, "--") {
			continue
		}
		name := strings.TrimPrefix(w, "--")
		if !slices.ContainsFunc(cmd.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), name) }) {
			return fmt.Errorf("%q: volcli %s has no flag --%s", line, cmd.Name, name)
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

// The shipped scrape configuration has the three jobs, loads alerts.yml and
// passes promtool check config (with its token files in place).
func TestScrapeConfigPassesPromtool(t *testing.T) {
	src, err := os.ReadFile(scrapeFile)
	if err != nil {
		t.Fatal(err)
	}
	if rf, err := promtest.RuleFiles(src); err != nil || !slices.Equal(rf, []string{filepath.Base(alertsFile)}) {
		t.Errorf("rule_files %v (%v), want [alerts.yml]", rf, err)
	}
	dir := t.TempDir()
	js := map[string]promtest.Job{}
	for _, j := range jobs {
		tok := filepath.Join(dir, j+".token")
		if err := os.WriteFile(tok, []byte("id.secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		js[j] = promtest.Job{Targets: []string{"127.0.0.1:9"}, TokenFile: tok}
	}
	// The token paths are the only change; an unknown or missing job fails.
	cfg, err := promtest.ScrapeConfig(src, js, "15s")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, alertsFile, filepath.Join(dir, "alerts.yml"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("promtool check config:\n%s", promtool(t, dir, "check", "config", "prometheus.yml"))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The dashboard is valid JSON whose every panel has queries, and each query
// is valid PromQL: promtool checks them as recording rules.
func TestDashboardQueriesAreValidPromQL(t *testing.T) {
	qs, err := promtest.DashboardQueries(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range qs {
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, strconv.Quote(promtest.GrafanaVariables(q.Expr, "1m")))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := promtool(t, dir, "check", "rules", "dashboard-rules.yml")
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(qs))) {
		t.Errorf("promtool check rules of the %d dashboard queries:\n%s", len(qs), out)
	}
}

// Every metric the alert rules and the dashboard use is one the daemons
// export (or Prometheus' own up).
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	exported, _ := exportedMetrics(t)
	for _, want := range []string{"volmaster_http_requests_total", "volplugin_volume_used_bytes", "volsupervisor_leader",
		"volmaster_backend_call_duration_seconds_bucket", "go_goroutines", "process_resident_memory_bytes"} {
		if !exported[want] {
			t.Fatalf("the scan of the daemons' sources misses %s: fix exportedMetrics", want)
		}
	}
	var exprs []string
	for _, r := range rules(t) {
		exprs = append(exprs, r.Expr)
	}
	qs, err := promtest.DashboardQueries(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		exprs = append(exprs, q.Expr)
	}
	used, err := promtest.UsedMetrics(exprs)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range used {
		if !exported[n] {
			t.Errorf("%s is used by alerts.yml or the dashboard but no daemon exports it", n)
		}
	}
	t.Logf("%d metrics used, all exported", len(used))
}

var docMetric = regexp.MustCompile(`\b(?:volmaster|volplugin|volsupervisor)_[a-z0-9_]+`)

// Every metric the documents name is one the daemons define.
func TestDocsNameExportedMetrics(t *testing.T) {
	series, families := exportedMetrics(t)
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no documents: %v", err)
	}
	n := 0
	for _, d := range append(docs, "../README.md") {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range docMetric.FindAllString(string(b), -1) {
			n++
			if !series[name] && !families[name] {
				t.Errorf("%s names metric %s, which no daemon defines", filepath.Base(d), name)
			}
		}
	}
	if n == 0 {
		t.Error("the documents name no metric: is the pattern broken?")
	}
}

// exportedMetrics returns the series names the daemons export: the
// families their sources define (prometheus.*Opts{Name: "..."} and
// prometheus.NewDesc("...")), a histogram's _bucket, _sum and _count, the
// Go and process collectors' families, and Prometheus' up; and the family
// names.
func exportedMetrics(t *testing.T) (series, families map[string]bool) {
	t.Helper()
	out := map[string]bool{"up": true}
	families = map[string]bool{}
	add := func(name string, kind string) {
		families[name] = true
		switch kind {
		case "HistogramOpts":
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case "SummaryOpts":
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	for _, dir := range []string{"../volmaster", "../volplugin", "../volsupervisor"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			scanMetrics(t, f, add)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		kind := ""
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			kind = "HistogramOpts"
		case dto.MetricType_SUMMARY:
			kind = "SummaryOpts"
		}
		add(f.GetName(), kind)
	}
	return out, families
}

func scanMetrics(t *testing.T, file string, add func(name, kind string)) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	str := func(e ast.Expr) (string, bool) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(lit.Value)
		return s, err == nil
	}
	promSel := func(e ast.Expr) string {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return ""
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
			return ""
		}
		return sel.Sel.Name
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			kind := promSel(n.Type)
			if !strings.HasSuffix(kind, "Opts") {
				return true
			}
			for _, e := range n.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok {
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
						if s, ok := str(kv.Value); ok {
							add(s, kind)
						}
					}
				}
			}
		case *ast.CallExpr:
			if promSel(n.Fun) == "NewDesc" && len(n.Args) > 0 {
				if s, ok := str(n.Args[0]); ok {
					add(s, "")
				}
			}
		}
		return true
	})
}

func TestCheckVolcli(t *testing.T) {
	app := volcli.App(nil, io.Discard, io.Discard)
	for line, ok := range map[string]bool{
		"volcli use list":                          true,
		"volcli volume snapshot list p/v":          true,
		"volcli audit --since 15m":                 true,
		"volcli volume resize POLICY/NAME SIZE":    true,
		"volcli volume frobnicate p/v":             false,
		"volcli volume":                            false,
		"volcli audit --until 15m":                 false,
		"volcli nothing":                           false,
		"volcli volume snapshot take --exec x p/v": true,
		"volcli volume snapshot take --nope x p/v": false,
	} {
		if err := checkVolcli(app, line); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", line, err, ok)
		}
	}
}
