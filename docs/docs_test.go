package docs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/clidoc"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/volcli"
	"github.com/volplugin/volplugin/volmaster"
)

// root is the repository, seen from this package's directory.
const root = ".."

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// missing returns the sorted keys of m that are not in other.
func missing(m, other map[string]bool) []string {
	var out []string
	for k := range m {
		if !other[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// compare fails with what each side lacks.
func compare(t *testing.T, codeName string, code map[string]bool, docName string, doc map[string]bool) {
	t.Helper()
	if m := missing(code, doc); len(m) > 0 {
		t.Errorf("%s lacks what %s has:\n  %s", docName, codeName, strings.Join(m, "\n  "))
	}
	if m := missing(doc, code); len(m) > 0 {
		t.Errorf("%s lists what %s does not have:\n  %s", docName, codeName, strings.Join(m, "\n  "))
	}
}

func routes() map[string]bool {
	out := map[string]bool{}
	for _, r := range volmaster.Routes() {
		out[r.Method+" "+r.Path] = true
	}
	return out
}

var (
	yamlPath   = regexp.MustCompile(`^  (/[^:\s]*):\s*$`)
	yamlMethod = regexp.MustCompile(`^    (get|put|post|delete|patch|head|options):\s*$`)
)

// openAPIRoutes reads "METHOD /path" from the paths section of an OpenAPI
// document written in block style (paths at two spaces, methods at four).
func openAPIRoutes(doc string) map[string]bool {
	out := map[string]bool{}
	inPaths, path := false, ""
	sc := bufio.NewScanner(strings.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && line[0] != ' ' && line[0] != '#' {
			inPaths, path = line == "paths:", ""
			continue
		}
		if !inPaths {
			continue
		}
		if m := yamlPath.FindStringSubmatch(line); m != nil {
			path = m[1]
		} else if m := yamlMethod.FindStringSubmatch(line); m != nil && path != "" {
			out[strings.ToUpper(m[1])+" "+path] = true
		}
	}
	return out
}

var mdRoute = regexp.MustCompile(`(?m)^### (GET|PUT|POST|DELETE|PATCH|HEAD|OPTIONS) (/\S*)$`)

func TestOpenAPIListsEveryRoute(t *testing.T) {
	doc := openAPIRoutes(read(t, "openapi.yaml"))
	if len(doc) == 0 {
		t.Fatal("no paths found in openapi.yaml")
	}
	compare(t, "volmaster.Routes()", routes(), "docs/openapi.yaml", doc)
}

func TestRESTDocListsEveryRoute(t *testing.T) {
	doc := map[string]bool{}
	for _, m := range mdRoute.FindAllStringSubmatch(read(t, "rest-api.md"), -1) {
		doc[m[1]+" "+m[2]] = true
	}
	compare(t, "volmaster.Routes()", routes(), "docs/rest-api.md (### METHOD /path headings)", doc)
}

// TestOpenAPIIsValid runs an OpenAPI validator where one is installed (the
// Python openapi-spec-validator); it is optional.
func TestOpenAPIIsValid(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3: openapi.yaml not validated")
	}
	if exec.Command(py, "-c", "import openapi_spec_validator").Run() != nil {
		t.Skip("python3 has no openapi_spec_validator: openapi.yaml not validated")
	}
	out, err := exec.Command(py, "-c", `
import sys
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
validate(read_from_filename(sys.argv[1])[0])
`, "openapi.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v\n%s", err, out)
	}
}

func TestVolcliReferenceIsGenerated(t *testing.T) {
	var want bytes.Buffer
	if err := clidoc.Volcli(&want); err != nil {
		t.Fatal(err)
	}
	got := read(t, "volcli.md")
	if got != want.String() {
		t.Errorf("docs/volcli.md is not what the generator writes for the current commands; run: %s (or make docs)", clidoc.VolcliCommand)
	}
	app := volcli.App(nil, io.Discard, io.Discard)
	for _, c := range clidoc.Commands(app) {
		if !strings.Contains(got, "\n### "+clidoc.Heading(app, c)+"\n") {
			t.Errorf("docs/volcli.md has no section for command %q", clidoc.Heading(app, c))
		}
	}
}

// daemonFlags returns the names of the cli flags a main.go defines
// (&cli.XFlag{Name: "..."}).
func daemonFlags(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		sel, ok := lit.Type.(*ast.SelectorExpr)
		if !ok || !strings.HasSuffix(sel.Sel.Name, "Flag") {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "cli" {
			return true
		}
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
				if s, ok := kv.Value.(*ast.BasicLit); ok && s.Kind == token.STRING {
					name, _ := strconv.Unquote(s.Value)
					names = append(names, name)
				}
			}
		}
		return true
	})
	return names
}

// section returns the text under a Markdown heading, up to the next heading
// of the same or a higher level outside code blocks.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	lines := strings.Split(doc, "\n")
	start := slices.Index(lines, heading)
	if start < 0 {
		t.Fatalf("no heading %q", heading)
	}
	fenced := false
	for i := start + 1; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if h := strings.Index(line, " "); !fenced && h > 0 && h <= level && strings.Trim(line[:h], "#") == "" {
			return strings.Join(lines[start+1:i], "\n")
		}
	}
	return strings.Join(lines[start+1:], "\n")
}

func TestOperatorGuideListsEveryDaemonFlag(t *testing.T) {
	guide := read(t, "operator-guide.md")
	for _, d := range []string{"volmaster", "volplugin", "volsupervisor"} {
		flags := daemonFlags(t, filepath.Join(root, "cmd", d, "main.go"))
		if len(flags) == 0 {
			t.Fatalf("no flags found in cmd/%s/main.go", d)
		}
		doc := section(t, guide, "### "+d)
		documented := map[string]bool{}
		for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|").FindAllStringSubmatch(doc, -1) {
			documented[m[1]] = true
		}
		code := map[string]bool{}
		for _, f := range flags {
			code[f] = true
		}
		compare(t, "cmd/"+d, code, "operator-guide.md ### "+d, documented)
	}
}

// TestArchitectureListsEveryKey compares the key layout in config/keys.go's
// documentation with the table in architecture.md.
func TestArchitectureListsEveryKey(t *testing.T) {
	code := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t(<prefix>/\S+)`).FindAllStringSubmatch(read(t, filepath.Join(root, "config", "keys.go")), -1) {
		code[m[1]] = true
	}
	if len(code) == 0 {
		t.Fatal("no key layout found in config/keys.go")
	}
	doc := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(<prefix>/[^`]+)` \\|").FindAllStringSubmatch(read(t, "architecture.md"), -1) {
		doc[m[1]] = true
	}
	compare(t, "config/keys.go", code, "architecture.md", doc)
}

// jsonFields returns the dotted JSON names of t's fields, recursing into
// structs: "runtime.snapshot.frequency".
func jsonFields(typ reflect.Type, prefix string, out map[string]bool) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		full := prefix + name
		out[full] = true
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == reflect.TypeFor[config.Policy]().PkgPath() {
			jsonFields(f.Type, full+".", out)
		}
	}
}

var firstCell = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

func tableNames(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range firstCell.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = true
	}
	return out
}

func TestPolicyReferenceListsEveryField(t *testing.T) {
	doc := read(t, "policy-reference.md")

	policy := map[string]bool{}
	jsonFields(reflect.TypeFor[config.Policy](), "", policy)
	compare(t, "config.Policy", policy, "policy-reference.md ## Policy fields", tableNames(section(t, doc, "## Policy fields")))

	opts := map[string]bool{}
	for _, o := range config.VolumeOptions() {
		opts[o] = true
	}
	compare(t, "config.VolumeOptions()", opts, "policy-reference.md ## Volume options", tableNames(section(t, doc, "## Volume options")))

	global := map[string]bool{}
	jsonFields(reflect.TypeFor[config.Global](), "", global)
	compare(t, "config.Global", global, "policy-reference.md ## Global configuration", tableNames(section(t, doc, "## Global configuration")))
}

// goSources returns the contents of the repository's non-test Go files
// outside docs/.
func goSources(t *testing.T) string {
	t.Helper()
	var all strings.Builder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".run", "bin", "docs", "testdata", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		all.Write(b)
		all.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all.String()
}

// TestTroubleshootingMessagesExist checks that every message quoted in a
// troubleshooting heading still occurs in the code.
func TestTroubleshootingMessagesExist(t *testing.T) {
	src := goSources(t)
	headings := regexp.MustCompile("(?m)^### `([^`]+)`$").FindAllStringSubmatch(read(t, "troubleshooting.md"), -1)
	if len(headings) == 0 {
		t.Fatal("no ### `message` headings in troubleshooting.md")
	}
	for _, h := range headings {
		if !strings.Contains(src, h[1]) {
			t.Errorf("troubleshooting.md explains %q, which no longer occurs in the code", h[1])
		}
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#+ (.+)$`)
)

// TestLinksResolve checks the relative links between the documents,
// anchors included.
func TestLinksResolve(t *testing.T) {
	docs, err := filepath.Glob("*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no documents: %v", err)
	}
	anchors := map[string]map[string]bool{}
	for _, d := range docs {
		anchors[d] = map[string]bool{}
		for _, m := range mdHeading.FindAllStringSubmatch(read(t, d), -1) {
			anchors[d][clidoc.Anchor(m[1])] = true
		}
	}
	for _, d := range docs {
		text := read(t, d)
		// Links inside code blocks are not links.
		text = regexp.MustCompile("(?s)```.*?```").ReplaceAllString(text, "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			if file == "" {
				file = d
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s links to %s: %v", d, target, err)
				continue
			}
			if anchor != "" && anchors[file] != nil && !anchors[file][anchor] {
				t.Errorf("%s links to %s: no such heading in %s", d, target, file)
			}
		}
	}
}

// The managed plugin's config.json configures volplugin through environment
// variables: each must be one volplugin reads (VOLMASTER or VOLPLUGIN_<FLAG>
// of an existing flag; a misspelt one would be ignored without a word), and
// the operator guide must name each, and each mount.
func TestPluginConfigMatchesVolplugin(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "packaging", "plugin", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Entrypoint []string
		Env        []struct{ Name string }
		Mounts     []struct{ Name string }
		Interface  struct{ Socket string }
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	reads := map[string]bool{"VOLMASTER": true}
	flags := map[string]bool{}
	for _, f := range daemonFlags(t, filepath.Join(root, "cmd", "volplugin", "main.go")) {
		flags[f] = true
		reads["VOLPLUGIN_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))] = true
	}
	for _, a := range cfg.Entrypoint[1:] {
		if f, ok := strings.CutPrefix(a, "--"); ok && !flags[f] {
			t.Errorf("config.json's entrypoint passes --%s, which volplugin does not have", f)
		}
	}
	guide := section(t, read(t, "operator-guide.md"), "## Managed Docker plugin")
	for _, e := range cfg.Env {
		if !reads[e.Name] {
			t.Errorf("config.json sets %s, which volplugin does not read", e.Name)
		}
		if !strings.Contains(guide, "`"+e.Name+"`") {
			t.Errorf("operator-guide.md's managed plugin section does not name %s", e.Name)
		}
	}
	for _, m := range cfg.Mounts {
		if !strings.Contains(guide, "mount `"+m.Name+"`") {
			t.Errorf("operator-guide.md's managed plugin section does not describe mount %s", m.Name)
		}
	}
	if cfg.Interface.Socket != "volplugin.sock" || !slices.Contains(cfg.Entrypoint, "volplugin") {
		t.Errorf("config.json's socket %q must be the entrypoint's --plugin-name + .sock", cfg.Interface.Socket)
	}
}

// The operator guide's failover paragraph states how often the client tries
// every volmaster again and its first wait: they must be the client's.
func TestFailoverDocMatchesClient(t *testing.T) {
	guide := section(t, read(t, "operator-guide.md"), "### Several volmasters: clients fail over")
	want := fmt.Sprintf("up to %d times (first wait %d ms, doubling)", client.DefaultRetries, client.DefaultBackoff.Milliseconds())
	if !strings.Contains(strings.Join(strings.Fields(guide), " "), want) {
		t.Errorf("operator-guide.md's failover section does not say %q", want)
	}
}

// TestDocsNameRealTestsAndSubcommands checks that every test the documents
// cite (`TestName`) and every `volmaster SUBCOMMAND` they show exists.
func TestDocsNameRealTestsAndSubcommands(t *testing.T) {
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, d := range append(docs, filepath.Join(root, "README.md")) {
		text.WriteString(read(t, d))
	}
	var tests strings.Builder
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		tests.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`(Test[A-Z][A-Za-z0-9]*)`").FindAllStringSubmatch(text.String(), -1) {
		if !strings.Contains(tests.String(), "func "+m[1]+"(") {
			t.Errorf("the documents cite %s, which is no test", m[1])
		}
	}
	main := read(t, filepath.Join(root, "cmd", "volmaster", "main.go"))
	for _, m := range regexp.MustCompile(`volmaster (etcd-[a-z-]+)`).FindAllStringSubmatch(text.String(), -1) {
		if !regexp.MustCompile(`Name:\s+"` + m[1] + `"`).MatchString(main) {
			t.Errorf("the documents show volmaster %s, which is no subcommand", m[1])
		}
	}
}
