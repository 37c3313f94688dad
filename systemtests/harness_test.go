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
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds volmaster and volcli built for this run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "volplugin-systemtests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/volmaster", "../cmd/volcli")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// volmaster is a running volmaster process.
type volmaster struct {
	cmd     *exec.Cmd
	URL     string
	EtcdURL string
	done    chan error
	logPath string
	stopped bool
	exitErr error
}

func (vm *volmaster) logs() string {
	b, _ := os.ReadFile(vm.logPath)
	return string(b)
}

// startVolmaster runs bin/volmaster on free ports with dataDir and waits until
// it prints its URLs. It is stopped (SIGTERM) when the test ends.
func startVolmaster(tb testing.TB, dataDir string, extra ...string) *volmaster {
	tb.Helper()
	args := append([]string{
		"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--mount-root", filepath.Join(dataDir, "mnt"),
		"--etcd-listen", "http://127.0.0.1:0", "--etcd-peer-listen", "http://127.0.0.1:0",
	}, extra...)
	cmd := exec.Command(filepath.Join(binDir, "volmaster"), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	vm := &volmaster{cmd: cmd, done: make(chan error, 1), logPath: filepath.Join(tb.TempDir(), "volmaster.log")}
	logf, err := os.Create(vm.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	urls := make(chan [2]string, 1)
	go func() {
		var api, etcd string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "volmaster API: "); ok {
				api = v
			}
			if v, ok := strings.CutPrefix(line, "etcd client URL: "); ok {
				etcd = v
				urls <- [2]string{api, etcd}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { vm.done <- cmd.Wait() }()
	select {
	case u := <-urls:
		vm.URL, vm.EtcdURL = u[0], u[1]
	case err := <-vm.done:
		tb.Fatalf("volmaster exited at start: %v\n%s", err, vm.logs())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		tb.Fatalf("volmaster did not start within 60s\n%s", vm.logs())
	}
	tb.Cleanup(func() { vm.stop(tb) })
	return vm
}

// stop sends SIGTERM and waits for the exit; it returns the exit error.
func (vm *volmaster) stop(tb testing.TB) error {
	if vm.stopped {
		return vm.exitErr
	}
	vm.stopped = true
	_ = vm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case vm.exitErr = <-vm.done:
	case <-time.After(30 * time.Second):
		_ = vm.cmd.Process.Kill()
		<-vm.done
		vm.exitErr = errors.New("volmaster did not stop within 30s of SIGTERM")
	}
	return vm.exitErr
}

// volcli runs the volcli binary and returns its stdout, stderr and exit code.
func volcli(tb testing.TB, url, stdin string, args ...string) (string, string, int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "volcli"), append([]string{"--volmaster", url}, args...)...)
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
