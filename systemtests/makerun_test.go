package systemtests

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `make run`'s script, as the README's first command runs it, with every
// address moved off its default: the banner names each address, each
// answers there, a second volplugin of the same name is refused, and a
// SIGTERM to the PID in run.pid (what `make stop` sends) stops every daemon
// and removes the plugin socket.
func TestMakeRunScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the plugin socket is in /run/docker/plugins")
	}
	runDir := t.TempDir()
	plugin := "vpsys-run"
	sock := filepath.Join("/run/docker/plugins", plugin+".sock")
	env := map[string]string{
		"RUN_DIR": runDir, "BIN": binDir, "PLUGIN_NAME": plugin,
		"LISTEN": freePort(t), "ETCD_LISTEN": "http://" + freePort(t), "ETCD_PEER_LISTEN": "http://" + freePort(t),
		"SUPERVISOR_LISTEN": freePort(t), "PLUGIN_METRICS": freePort(t),
	}
	cmd := exec.Command("../scripts/run")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The daemons inherit the output pipe: bound Wait's wait for it.
	cmd.WaitDelay = 10 * time.Second
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = os.Remove(sock)
	})
	waitFor(t, time.Minute, "make run's banner", func() bool {
		select {
		case <-done:
			t.Fatalf("scripts/run exited: %v\n%s", waitErr, out.String())
		default:
		}
		return strings.Contains(out.String(), "stops everything")
	})
	banner := out.String()
	for _, k := range []string{"LISTEN", "ETCD_LISTEN", "SUPERVISOR_LISTEN"} {
		if !strings.Contains(banner, env[k]) {
			t.Errorf("the banner does not name %s=%s:\n%s", k, env[k], banner)
		}
	}
	if !strings.Contains(banner, sock) {
		t.Errorf("the banner does not name the plugin socket %s:\n%s", sock, banner)
	}
	get := func(url string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for what, url := range map[string]string{
		"volmaster":         "http://" + env["LISTEN"] + "/healthz",
		"embedded etcd":     env["ETCD_LISTEN"] + "/health",
		"volsupervisor":     "http://" + env["SUPERVISOR_LISTEN"] + "/healthz",
		"volplugin metrics": "http://" + env["PLUGIN_METRICS"] + "/metrics",
	} {
		if code := get(url); code != http.StatusOK {
			t.Errorf("%s at %s: status %d", what, url, code)
		}
	}
	second := exec.Command(filepath.Join(binDir, "volplugin"), "--volmaster", "http://"+env["LISTEN"],
		"--plugin-name", plugin, "--state-dir", filepath.Join(runDir, "state"), "--metrics-listen", "")
	if b, err := second.CombinedOutput(); err == nil || !strings.Contains(string(b), "another volplugin is running") {
		t.Errorf("a second volplugin named %s: %v %s, want a refusal", plugin, err, b)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the first volplugin's socket after the refused second one: %v", err)
	}

	pidb, err := os.ReadFile(filepath.Join(runDir, "run.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if err != nil || pid != cmd.Process.Pid {
		t.Fatalf("run.pid holds %q, want %d", pidb, cmd.Process.Pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("scripts/run still running a minute after SIGTERM")
	}
	for _, addr := range []string{env["LISTEN"], strings.TrimPrefix(env["ETCD_LISTEN"], "http://"), env["SUPERVISOR_LISTEN"], env["PLUGIN_METRICS"]} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still answers after make run stopped", addr)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("plugin socket after stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "run.pid")); !os.IsNotExist(err) {
		t.Errorf("run.pid after stop: %v", err)
	}
}

// The README documents every setting `make run` takes: each variable the
// script's header lists.
func TestMakeRunSettingsDocumented(t *testing.T) {
	script, err := os.ReadFile("../scripts/run")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`(?m)^#   ([A-Z_]+)(?:=0)?\s`).FindAllSubmatch(script, -1)
	if len(vars) < 5 {
		t.Fatalf("found %d settings in scripts/run's header, the test's pattern is stale", len(vars))
	}
	for _, v := range vars {
		if !bytes.Contains(readme, append([]byte("`"), v[1]...)) {
			t.Errorf("README.md does not document make run's %s", v[1])
		}
	}
}
