// Package dockertest gives tests a private Docker engine of their own, run by
// scripts/docker-dev: its own data-root, exec-root, socket and network
// namespace, stopped (by PID) with its containers and mounts when the test ends.
//
// It needs root. Without it, or when the engine cannot be installed, Start
// skips the test, unless CI=true, where it fails it instead.
package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultImage is the tag Image builds: busybox plus coreutils dd at /usr/bin/gnudd.
const DefaultImage = "volplugin-test:latest"

// DefaultTimeout bounds a Docker call whose context has no deadline.
const DefaultTimeout = 2 * time.Minute

// Option changes how Start runs the daemon.
type Option func(*options)

type options struct {
	pluginsDir   string
	sharedMounts []string
	keep         bool
	hostNet      bool
}

// WithPluginsDir runs the daemon in a private mount namespace where dir is
// bind-mounted over /run/docker/plugins, so it sees only the plugins in dir
// (two Docker "hosts" on one machine). Combine with WithSharedMount for the
// directory the plugin mounts volumes under.
func WithPluginsDir(dir string) Option {
	return func(o *options) { o.pluginsDir = dir }
}

// WithSharedMount makes dir a shared bind mount before the daemon starts, so
// mounts made under it later (by a plugin on the host) are visible to a
// daemon started WithPluginsDir. It is unmounted again by the cleanup when
// nothing is left mounted under it.
func WithSharedMount(dir string) Option {
	return func(o *options) { o.sharedMounts = append(o.sharedMounts, dir) }
}

// WithHostNetwork runs the daemon in the host's network namespace, for a
// managed plugin (network type host) that must reach services on the host's
// loopback. scripts/docker-dev refuses it when the host has a docker0 bridge.
func WithHostNetwork() Option {
	return func(o *options) { o.hostNet = true }
}

// WithKeepDataRoot leaves the data-root on disk after the test (for debugging).
func WithKeepDataRoot() Option {
	return func(o *options) { o.keep = true }
}

// Daemon is a running private dockerd.
type Daemon struct {
	Name    string // the docker-dev NAME
	Host    string // unix:///run/vpd/NAME.sock, for docker -H or DOCKER_HOST
	PID     int    // dockerd's PID
	LogPath string // dockerd's log (kept after the test)
	script  string
}

// SkipOrFail skips the test with the reason, or fails it when CI=true.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("dockertest (CI=true, not skipping): "+format, args...)
	}
	tb.Skipf("dockertest: "+format, args...)
}

// Script returns the path of scripts/docker-dev.
func Script() (string, error) { return FindScript("docker-dev") }

// FindScript returns the path of scripts/NAME of this repository, looked for
// above this package's source and above the working directory.
func FindScript(name string) (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, "scripts", name)
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("scripts/" + name + " not found above the package or working directory")
}

// Start installs Docker if needed (scripts/docker-dev install is idempotent)
// and starts the daemon name, replacing one of that name left by an earlier
// run: names must be unique among tests that run at the same time, in all
// packages. t.Cleanup removes the daemon's containers and stops it.
func Start(tb testing.TB, name string, opts ...Option) *Daemon {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "needs root to run dockerd (euid %d)", os.Geteuid())
	}
	script, err := Script()
	if err != nil {
		SkipOrFail(tb, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := run(ctx, script, "install"); err != nil {
		SkipOrFail(tb, "docker-dev install: %v\n%s", err, out)
	}
	d := &Daemon{Name: name, script: script}
	// A daemon of this name left by a killed run: stop it, keep nothing.
	if out, err := run(ctx, script, "down", name); err != nil {
		tb.Fatalf("docker-dev down %s (leftover): %v\n%s", name, err, out)
	}
	tb.Cleanup(func() { d.stop(tb, o.keep) })

	args := []string{"up", name}
	if o.pluginsDir != "" {
		args = append(args, "--plugins-dir", o.pluginsDir)
	}
	for _, m := range o.sharedMounts {
		args = append(args, "--shared-mount", m)
	}
	if o.hostNet {
		args = append(args, "--host-net")
	}
	out, err := run(ctx, script, args...)
	if err != nil {
		tb.Fatalf("docker-dev %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for line := range strings.Lines(out) {
		if h, ok := strings.CutPrefix(strings.TrimSpace(line), "export DOCKER_HOST="); ok {
			d.Host = h
		}
	}
	if d.Host == "" {
		tb.Fatalf("docker-dev up %s printed no DOCKER_HOST:\n%s", name, out)
	}
	st, err := d.status(ctx)
	if err != nil {
		tb.Fatalf("docker-dev status %s: %v", name, err)
	}
	d.LogPath = st["log"]
	if d.PID, err = strconv.Atoi(st["pid"]); err != nil {
		tb.Fatalf("docker-dev status %s: pid %q", name, st["pid"])
	}
	return d
}

func (d *Daemon) status(ctx context.Context) (map[string]string, error) {
	out, err := run(ctx, d.script, "status", d.Name)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	st := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			st[k] = v
		}
	}
	return st, nil
}

// stop removes the daemon's containers and plugins and stops it; it logs the daemon's log
// tail when the test failed.
func (d *Daemon) stop(tb testing.TB, keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if d.Host != "" {
		ids, _, err := d.Docker(ctx, "ps", "-aq")
		if err != nil {
			tb.Logf("dockertest: listing containers of %s: %v", d.Name, err)
		}
		if f := strings.Fields(ids); len(f) > 0 {
			if _, _, err := d.Docker(ctx, append([]string{"rm", "-f", "-v"}, f...)...); err != nil {
				tb.Errorf("dockertest: removing containers of %s: %v", d.Name, err)
			}
		}
		// Managed plugins run as containers too and hold their mounts.
		plugins, _, err := d.Docker(ctx, "plugin", "ls", "-q")
		if err != nil {
			tb.Logf("dockertest: listing plugins of %s: %v", d.Name, err)
		}
		for _, p := range strings.Fields(plugins) {
			if _, _, err := d.Docker(ctx, "plugin", "rm", "-f", p); err != nil {
				tb.Errorf("dockertest: removing plugin %s of %s: %v", p, d.Name, err)
			}
		}
	}
	if tb.Failed() && d.LogPath != "" {
		tb.Logf("dockertest: last lines of %s:\n%s", d.LogPath, tail(d.LogPath, 40))
	}
	args := []string{"down", d.Name}
	if keep {
		args = append(args, "--keep")
	}
	if out, err := run(ctx, d.script, args...); err != nil {
		tb.Errorf("dockertest: docker-dev %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Docker runs the docker CLI against this daemon. Without a deadline on ctx
// the call is bounded by DefaultTimeout. err includes stderr.
func (d *Daemon) Docker(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", d.Host}, args...)...)
	cmd.Env = d.Env()
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// Env is os.Environ with DOCKER_HOST pointing at this daemon (and no other
// Docker endpoint settings), for commands that talk to it.
func (d *Daemon) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DOCKER_HOST="+d.Host)
}

// Image builds DefaultImage in this daemon unless it is there, and returns it.
func (d *Daemon) Image(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := run(ctx, d.script, "image", d.Name, DefaultImage)
	if err != nil {
		tb.Fatalf("docker-dev image %s: %v\n%s", d.Name, err, out)
	}
	return DefaultImage
}

var ddCopied = regexp.MustCompile(`(?m)^(\d+) bytes .*copied, ([0-9.]+(?:e[-+]?\d+)?) s`)

// DDRate reads coreutils dd's summary ("N bytes ... copied, S s, R MB/s") and
// returns N/S in bytes per second: exact, unlike dd's rounded, unit-varying R.
func DDRate(out string) (float64, error) {
	m := ddCopied.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no dd summary in %q", out)
	}
	n, err1 := strconv.ParseFloat(m[1], 64)
	s, err2 := strconv.ParseFloat(m[2], 64)
	if err := errors.Join(err1, err2); err != nil || s <= 0 {
		return 0, fmt.Errorf("bad dd summary %q: %v", m[0], err)
	}
	return n / s, nil
}

func run(ctx context.Context, script string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
