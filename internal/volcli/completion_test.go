package volcli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// asVolcli makes the test binary act as volcli (the completion scripts run
// a real volcli process).
const asVolcli = "VOLCLI_TEST_AS_VOLCLI"

func TestMain(m *testing.M) {
	if os.Getenv(asVolcli) == "1" {
		os.Exit(Run(os.Args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// volcliOnPath returns an environment whose PATH starts with a directory
// holding "volcli" (this test binary acting as volcli) talking to url.
func volcliOnPath(t *testing.T, url string) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "volcli")); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), asVolcli+"=1", "VOLMASTER="+url, "PATH="+dir+":"+os.Getenv("PATH"))
}

func script(t *testing.T, shell string) string {
	t.Helper()
	r := runVolcli("", "completion", shell)
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "volcli") {
		t.Fatalf("completion %s: exit %d, stderr %q", shell, r.code, r.stderr)
	}
	p := filepath.Join(t.TempDir(), shell)
	if err := os.WriteFile(p, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shellRun runs a shell program with a deadline and returns its output.
func shellRun(t *testing.T, env []string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func TestCompletionScriptsParse(t *testing.T) {
	bash := script(t, "bash")
	shellRun(t, os.Environ(), "bash", "-n", bash)
	zsh := needZsh(t)
	shellRun(t, os.Environ(), zsh, "-n", script(t, "zsh"))

	r := runVolcli("", "completion", "fish")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `no completion for shell "fish"`) {
		t.Errorf("completion fish: exit %d, stderr %q", r.code, r.stderr)
	}
}

// needZsh returns zsh, installing Debian's package as root where it is
// missing (the project's apt helper); else the test is skipped.
func needZsh(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("zsh"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("zsh is not installed and installing it needs root: zsh scripts not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-c", `source ../../scripts/lib/apt.sh && apt_ensure volcli-completion-test zsh`).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("install zsh: %v\n%s", err, out)
		}
		t.Skipf("zsh is not installed and could not be: %v\n%s", err, out)
	}
	p, err := exec.LookPath("zsh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// completionCase is a command line being completed: the words typed, the
// last one the word under the cursor.
type completionCase struct {
	words []string
	want  []string // the candidates, sorted
	has   string   // or: one candidate that must be among them
}

func completionCases(snap string) []completionCase {
	return []completionCase{
		{words: []string{"volcli", "vol"}, want: []string{"volume"}},
		{words: []string{"volcli", "volume", "snap"}, want: []string{"snapshot"}},
		{words: []string{"volcli", "volume", "get", ""}, want: []string{"p/a", "p/b", "q/c"}},
		{words: []string{"volcli", "volume", "get", "p/"}, want: []string{"p/a", "p/b"}},
		{words: []string{"volcli", "volume", "list", ""}, want: []string{"p", "q"}},
		{words: []string{"volcli", "volume", "create", ""}, want: []string{"p/", "q/"}},
		{words: []string{"volcli", "volume", "snapshot", "copy", "p/a", ""}, want: []string{snap}},
		{words: []string{"volcli", "volume", "snapshot", "copy", "p/a", snap, ""}},
		{words: []string{"volcli", "policy", "get", "q"}, want: []string{"q"}},
		{words: []string{"volcli", "completion", ""}, want: []string{"bash", "zsh"}},
		{words: []string{"volcli", "volume", "list-all", "--o"}, want: []string{"--output"}},
		{words: []string{"volcli", "volume", "list", "-"}, has: "--quiet"},
		// Global flags on the line are used; a volmaster that does not
		// answer gives no candidates.
		{words: []string{"volcli", "--volmaster", "http://127.0.0.1:1", "volume", "get", ""}},
		// After "--" nothing is asked (urfave/cli would run the command).
		{words: []string{"volcli", "volume", "snapshot", "copy", "--", "p/a", snap, ""}},
	}
}

func completionFixture(t *testing.T) (*harness, string) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok(localPolicy("10MB"), "policy", "upload", "q")
	for _, v := range []string{"p/a", "p/b", "q/c"} {
		h.ok("", "volume", "create", v)
	}
	return h, strings.TrimSpace(h.ok("", "volume", "snapshot", "take", "p/a"))
}

func checkCandidates(t *testing.T, c completionCase, out string) {
	t.Helper()
	got := strings.Fields(out)
	slices.Sort(got)
	switch {
	case c.has != "" && !slices.Contains(got, c.has):
		t.Errorf("completing %q: %q, want %q among them", c.words, got, c.has)
	case c.has == "" && !slices.Equal(got, c.want):
		t.Errorf("completing %q: %q, want %q", c.words, got, c.want)
	}
}

// The bash script, run by bash as completion would, with a real volcli
// process against a real volmaster.
func TestBashCompletion(t *testing.T) {
	h, snap := completionFixture(t)
	env := volcliOnPath(t, h.url)
	bash := script(t, "bash")
	before := h.dump()
	for _, c := range completionCases(snap) {
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _volcli; printf '%s\n' "${COMPREPLY[@]}"`
		out := shellRun(t, env, append([]string{"bash", "-c", prog, "bash", bash}, c.words...)...)
		checkCandidates(t, c, out)
	}
	h.sameDump(before, "completion")
}

// The zsh script, with zsh's completion builtins replaced by FAKES: compadd
// prints the candidates that match the word under the cursor (as the real
// one offers them), _files and compdef do nothing.
func TestZshCompletion(t *testing.T) {
	zsh := needZsh(t)
	h, snap := completionFixture(t)
	env := volcliOnPath(t, h.url)
	file := script(t, "zsh")
	before := h.dump()
	for _, c := range completionCases(snap) {
		prog := `compdef() { :; }; compadd() {
				[[ $1 == -S ]] && shift 2; shift
				local c; for c in "$@"; do [[ $c == ${words[CURRENT]}* ]] && print -r -- "$c"; done; return 0
			}; _files() { :; }
			source "$1"; shift; words=("$@"); CURRENT=$#; _volcli`
		out := shellRun(t, env, append([]string{zsh, "-f", "-c", prog, "zsh", file}, c.words...)...)
		checkCandidates(t, c, out)
	}
	h.sameDump(before, "completion")
}

// A completion request never runs the command, prints no error, and after
// "--" (where urfave/cli would run the command with the flag as an
// argument) does nothing at all.
func TestCompletionRequestRunsNothing(t *testing.T) {
	h, snap := completionFixture(t)
	before := h.dump()
	for _, args := range [][]string{
		{"volume", "remove", "p/a", completionFlag},
		{"volume", "snapshot", "copy", "p/a", snap, "new", completionFlag},
		{"volume", "snapshot", "copy", "--", "p/a", snap, "new", completionFlag},
		{"volume", "create", "p/new", completionFlag},
		{"policy", "delete", "q", completionFlag},
	} {
		r := h.run("", args...)
		if r.code != 0 || r.stderr != "" || r.stdout != "" {
			t.Errorf("volcli %s: exit %d, stdout %q, stderr %q; want nothing", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	h.sameDump(before, "completion requests")
	if r := h.run("", "volume", "get", completionFlag); r.stdout != "p/a\np/b\nq/c\n" {
		t.Errorf("volume get completion printed %q", r.stdout)
	}
}
