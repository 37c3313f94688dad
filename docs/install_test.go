package docs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/internal/volcli"
)

var (
	binaries = []string{"volcli", "volcsi", "volmaster", "volplugin", "volsupervisor"}
	units    = []string{"volmaster", "volplugin", "volsupervisor"}
)

// needInstall returns why make install cannot be tried here, or "".
func needInstall() string {
	if _, err := exec.LookPath("make"); err != nil {
		return "make is not installed"
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			return "bin/" + b + " is missing (run make build)"
		}
	}
	mk, err := os.ReadFile(makefile())
	if err != nil {
		return err.Error()
	}
	if !regexp.MustCompile(`(?m)^install:`).Match(mk) {
		return "the Makefile has no install target"
	}
	return ""
}

// makefile is the Makefile under test: the repository's, or the one named
// by $DOCS_TEST_MAKEFILE (to try a change before it lands).
func makefile() string {
	if f := os.Getenv("DOCS_TEST_MAKEFILE"); f != "" {
		return f
	}
	return filepath.Join(root, "Makefile")
}

func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	mk, err := filepath.Abs(makefile())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", append([]string{"-C", root, "-f", mk, "install"}, vars...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install %s: %v\n%s", strings.Join(vars, " "), err, out)
	}
}

// TestMakeInstall installs into a temporary DESTDIR and checks the layout,
// that existing configuration is kept, and the units with
// systemd-analyze verify where it exists.
func TestMakeInstall(t *testing.T) {
	if why := needInstall(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot test make install: %s", why)
		}
		t.Skipf("make install not tried: %s", why)
	}
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest)

	mode := func(p string) fs.FileMode {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for _, b := range binaries {
		if m := mode(filepath.Join(dest, "usr/bin", b)); m != 0o755 {
			t.Errorf("/usr/bin/%s has mode %v, want 0755", b, m)
		}
	}
	var unitFiles []string
	for _, u := range units {
		p := filepath.Join(dest, "lib/systemd/system", u+".service")
		unitFiles = append(unitFiles, p)
		if m := mode(p); m != 0o644 {
			t.Errorf("%s.service has mode %v, want 0644", u, m)
		}
		if !strings.Contains(read(t, p), "\nExecStart=/usr/bin/"+u+" ") {
			t.Errorf("%s.service does not start /usr/bin/%s", u, u)
		}
		env := filepath.Join(dest, "etc/volplugin", u+".env")
		if read(t, env) != read(t, filepath.Join(root, "packaging/etc/volplugin", u+".env")) {
			t.Errorf("%s differs from packaging/etc/volplugin/%s.env", env, u)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/share/doc/volplugin/operator-guide.md")); err != nil {
		t.Errorf("documents not installed: %v", err)
	}
	// The completion scripts, where bash-completion and zsh look, as volcli
	// prints them.
	for shell, p := range map[string]string{
		"bash": "usr/share/bash-completion/completions/volcli",
		"zsh":  "usr/share/zsh/vendor-completions/_volcli",
	} {
		var want bytes.Buffer
		if code := volcli.Run([]string{"volcli", "completion", shell}, nil, &want, io.Discard); code != 0 {
			t.Fatalf("volcli completion %s: exit %d", shell, code)
		}
		if m := mode(filepath.Join(dest, p)); m != 0o644 {
			t.Errorf("/%s has mode %v, want 0644", p, m)
		}
		if read(t, filepath.Join(dest, p)) != want.String() {
			t.Errorf("/%s is not what volcli completion %s prints", p, shell)
		}
	}
	// The operator guide points at the monitoring files where they are installed.
	for _, f := range []string{"prometheus/prometheus.yml", "prometheus/alerts.yml", "prometheus/alerts_test.yml", "grafana/volplugin.json"} {
		if read(t, filepath.Join(dest, "usr/share/doc/volplugin", f)) != read(t, filepath.Join(root, "deploy", f)) {
			t.Errorf("/usr/share/doc/volplugin/%s differs from deploy/%s", f, f)
		}
	}

	// A second install keeps an edited configuration file.
	edited := filepath.Join(dest, "etc/volplugin/volmaster.env")
	if err := os.WriteFile(edited, []byte("VOLMASTER_OPTS=--listen 10.0.0.1:9005\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	makeInstall(t, "DESTDIR="+dest)
	if got := read(t, edited); got != "VOLMASTER_OPTS=--listen 10.0.0.1:9005\n" {
		t.Errorf("make install overwrote an existing volmaster.env:\n%s", got)
	}

	// Another PREFIX: the units start the binaries where they are installed.
	dest2 := t.TempDir()
	makeInstall(t, "DESTDIR="+dest2, "PREFIX=/opt/volplugin")
	for _, b := range binaries {
		mode(filepath.Join(dest2, "opt/volplugin/bin", b))
	}
	mode(filepath.Join(dest2, "opt/volplugin/share/bash-completion/completions/volcli"))
	mode(filepath.Join(dest2, "opt/volplugin/share/zsh/vendor-completions/_volcli"))
	for _, u := range units {
		unit := read(t, filepath.Join(dest2, "lib/systemd/system", u+".service"))
		if !strings.Contains(unit, "\nExecStart=/opt/volplugin/bin/"+u+" ") || strings.Contains(unit, "/usr/bin/") {
			t.Errorf("with PREFIX=/opt/volplugin, %s.service does not point at /opt/volplugin/bin:\n%s", u, unit)
		}
	}

	verifyUnits(t, dest, unitFiles)
}

// verifyUnits runs systemd-analyze verify on the installed units, pointed at
// the binaries under dest (verify checks that ExecStart exists).
func verifyUnits(t *testing.T, dest string, unitFiles []string) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units not verified")
		return
	}
	dir := t.TempDir()
	var files []string
	for _, p := range unitFiles {
		text := strings.ReplaceAll(read(t, p), "/usr/bin/", filepath.Join(dest, "usr/bin")+"/")
		f := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, files...)...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	// Complaints about other units (docker.service on this machine, say)
	// are not ours.
	ours := false
	for _, u := range units {
		ours = ours || bytes.Contains(out, []byte(u+".service"))
	}
	if err != nil || ours {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
