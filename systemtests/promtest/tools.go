package promtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// installTimeout bounds scripts/prometheus-dev install (apt-get).
const installTimeout = 10 * time.Minute

// Tools returns the paths of prometheus and promtool, installing Debian's
// prometheus package (scripts/prometheus-dev install) when they are
// missing and the test runs as root. Otherwise a missing tool skips the
// test with the reason (fails it when CI=true).
func Tools(tb testing.TB) (prometheus, promtool string) {
	tb.Helper()
	find := func() bool {
		var err1, err2 error
		prometheus, err1 = exec.LookPath("prometheus")
		promtool, err2 = exec.LookPath("promtool")
		return err1 == nil && err2 == nil
	}
	if find() {
		return prometheus, promtool
	}
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(tb, "prometheus and promtool are not installed and installing them needs root: run scripts/prometheus-dev install as root")
	}
	script, err := dockertest.FindScript("prometheus-dev")
	if err != nil {
		dockertest.SkipOrFail(tb, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, script, "install").CombinedOutput(); err != nil {
		tb.Fatalf("%s install: %v\n%s", script, err, out)
	}
	if !find() {
		tb.Fatalf("%s install left no prometheus or promtool on PATH", script)
	}
	return prometheus, promtool
}

// Promtool runs promtool with args in dir and returns its combined output.
func Promtool(ctx context.Context, promtool, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
