// Package systemtests runs the built binaries the way a user does: volmaster
// as a process with its embedded etcd, volcli as a command.
package systemtests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds volmaster and volcli built for this run.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv(attackEnv) != "" {
		// Run as another user for one action (TestAttackerHelper): no
		// binaries to build, and no right to build them.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "volplugin-systemtests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The "faults" tag links the fault injector (internal/faultpoint): inert
	// unless a test names a step in VOLPLUGIN_FAULTPOINT. `make build` never
	// sets it.
	tags := strings.Trim(buildTags+",faults", ",")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", dir+"/", "../cmd/volmaster", "../cmd/volcli", "../cmd/volplugin", "../cmd/volsupervisor", "../cmd/volcsi")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	stopBench()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a daemon started from the built binaries.
type proc struct {
	cmd     *exec.Cmd
	done    chan error
	logPath string
	stopped bool
	exitErr error
	// lines holds the values of the "key: value" lines it printed at start.
	lines map[string]string
}

func (p *proc) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// startProc runs bin/name with args and waits until it has printed a line
// for each of the keys ("volmaster API", ...). It is stopped with SIGTERM
// when the test ends.
func startProc(tb testing.TB, name string, args []string, keys ...string) *proc {
	tb.Helper()
	return startProcVia(tb, nil, name, args, keys...)
}

// netns is a command prefix that runs a program in the network namespace of
// process pid (a private dockerd's, whose plugins and containers cannot
// reach the host's loopback).
func netns(pid int) []string {
	return []string{"nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--"}
}

// startProcVia is startProc with bin/name run through the command prefix wrap
// (nil: directly).
func startProcVia(tb testing.TB, wrap []string, name string, args []string, keys ...string) *proc {
	tb.Helper()
	return startProcEnv(tb, wrap, nil, name, args, keys...)
}

// startProcEnv is startProcVia with env added to the test's environment
// (VOLPLUGIN_FAULTPOINT=step, say).
func startProcEnv(tb testing.TB, wrap, env []string, name string, args []string, keys ...string) *proc {
	tb.Helper()
	p, wait := launchProc(tb, wrap, env, name, args, keys...)
	wait(tb)
	return p
}

// launchProc starts bin/name like startProcEnv but returns at once, with a
// wait that blocks until it has printed a line for each key: daemons that
// become ready only together (etcd members waiting for a quorum) are all
// launched first and waited for after. It is stopped with SIGTERM when the
// test ends, ready or not.
func launchProc(tb testing.TB, wrap, env []string, name string, args []string, keys ...string) (*proc, func(testing.TB)) {
	tb.Helper()
	argv := append(append(slices.Clone(wrap), filepath.Join(binDir, name)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// If the test binary dies, its daemons die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), logPath: filepath.Join(tb.TempDir(), name+".log"), lines: map[string]string{}}
	logf, err := os.Create(p.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ready := make(chan map[string]string, 1)
	go func() {
		got := map[string]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ": ")
			if !ok {
				continue
			}
			got[k] = v
			if !slices.ContainsFunc(keys, func(k string) bool { _, ok := got[k]; return !ok }) {
				ready <- got
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	// exited is closed when the process ends; done keeps its exit error for
	// signal.
	exited := make(chan struct{})
	go func() { p.done <- cmd.Wait(); close(exited) }()
	tb.Cleanup(func() { _ = p.stop() })
	wait := func(tb testing.TB) {
		tb.Helper()
		select {
		case p.lines = <-ready:
		case <-exited:
			tb.Fatalf("%s exited at start: %s\n%s", name, cmd.ProcessState, p.logs())
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			tb.Fatalf("%s did not start within 60s\n%s", name, p.logs())
		}
	}
	return p, wait
}

// stop sends SIGTERM and waits for the exit; it returns the exit error.
func (p *proc) stop() error {
	return p.signal(syscall.SIGTERM)
}

// signal sends sig and waits for the process to end.
func (p *proc) signal(sig syscall.Signal) error {
	if p.stopped {
		return p.exitErr
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(sig)
	select {
	case p.exitErr = <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.exitErr = fmt.Errorf("%s did not stop within 30s of %s", p.cmd.Path, sig)
	}
	return p.exitErr
}

// volmaster is a running volmaster process.
type volmaster struct {
	*proc
	URL     string
	EtcdURL string
}

// startVolmaster runs bin/volmaster on free ports with dataDir (mounts under
// dataDir/mnt) and waits until it prints its URLs.
func startVolmaster(tb testing.TB, dataDir string, extra ...string) *volmaster {
	tb.Helper()
	return startVolmasterVia(tb, nil, dataDir, extra...)
}

// startVolmasterVia is startVolmaster run through the command prefix wrap.
func startVolmasterVia(tb testing.TB, wrap []string, dataDir string, extra ...string) *volmaster {
	tb.Helper()
	args := append([]string{
		"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--mount-root", filepath.Join(dataDir, "mnt"),
		"--etcd-listen", "http://127.0.0.1:0", "--etcd-peer-listen", "http://127.0.0.1:0",
	}, extra...)
	p := startProcVia(tb, wrap, "volmaster", args, "volmaster API", "etcd client URL")
	return &volmaster{proc: p, URL: p.lines["volmaster API"], EtcdURL: p.lines["etcd client URL"]}
}

// startVolplugin runs bin/volplugin for vm's local backend as host label
// host, serving plugin name plugin.
func startVolplugin(tb testing.TB, vm *volmaster, dataDir, plugin, host string, extra ...string) *proc {
	tb.Helper()
	args := append([]string{
		"--volmaster", vm.URL, "--plugin-name", plugin, "--host-label", host,
		"--local-data-dir", filepath.Join(dataDir, "local"), "--mount-root", filepath.Join(dataDir, "mnt"),
		"--state-dir", filepath.Join(dataDir, "state", host), "--metrics-listen", "127.0.0.1:0",
	}, extra...)
	return startProc(tb, "volplugin", args, "volplugin socket")
}

// volcli runs the volcli binary and returns its stdout, stderr and exit code.
func volcli(tb testing.TB, url, stdin string, args ...string) (string, string, int) {
	tb.Helper()
	return volcliVia(tb, nil, url, stdin, args...)
}

// volcliVia is volcli run through the command prefix wrap (see netns).
func volcliVia(tb testing.TB, wrap []string, url, stdin string, args ...string) (string, string, int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append(append(slices.Clone(wrap), filepath.Join(binDir, "volcli"), "--volmaster", url), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			tb.Fatalf("volcli %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// execOut runs a command and returns its combined output.
func execOut(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
