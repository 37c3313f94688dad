// Package etcddev gives system tests a real multi-member etcd cluster of
// their own, run by scripts/etcd-dev on free loopback ports in a private
// directory: members can be killed (SIGKILL), started again and the leader
// found, and everything is stopped (by PID) when the test ends.
package etcddev

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/internal/etcdtest"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs, m1 first.
	Endpoints []string
	script    string
	env       []string
}

// callTimeout bounds each script call (building the server binary the first
// time is the slowest part).
const callTimeout = 5 * time.Minute

// Start runs an n-member cluster; t.Cleanup stops it and removes its data.
func Start(tb testing.TB, n int) *Cluster {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("etcddev: cannot locate scripts/etcd-dev")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "etcd-dev")
	port, err := etcdtest.FreePorts(2 * n)
	if err != nil {
		tb.Fatalf("etcddev: %v", err)
	}
	c := &Cluster{script: script, env: append(os.Environ(),
		"ETCD_DEV_DIR="+filepath.Join(tb.TempDir(), "etcd"), "ETCD_DEV_PORT="+strconv.Itoa(port))}
	tb.Cleanup(func() {
		if out, err := c.run("down"); err != nil {
			tb.Errorf("etcd-dev down: %v\n%s", err, out)
		}
	})
	out, err := c.run("up", strconv.Itoa(n))
	if err != nil {
		tb.Fatalf("etcd-dev up %d: %v\n%s", n, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "export VOLPLUGIN_ETCD="); ok {
			c.Endpoints = strings.Split(v, ",")
		}
	}
	if len(c.Endpoints) != n {
		tb.Fatalf("etcd-dev up %d printed no export line with %d URLs:\n%s", n, n, out)
	}
	return c
}

// Endpoint is the client URL of member ("m2").
func (c *Cluster) Endpoint(member string) string {
	i, err := strconv.Atoi(strings.TrimPrefix(member, "m"))
	if err != nil || i < 1 || i > len(c.Endpoints) {
		return ""
	}
	return c.Endpoints[i-1]
}

// Kill sends SIGKILL to member and waits until it is gone.
func (c *Cluster) Kill(tb testing.TB, member string) {
	tb.Helper()
	if out, err := c.run("kill", member); err != nil {
		tb.Fatalf("etcd-dev kill %s: %v\n%s", member, err, out)
	}
}

// Restart starts a killed member again and waits until it is healthy.
func (c *Cluster) Restart(tb testing.TB, member string) {
	tb.Helper()
	if out, err := c.run("start", member); err != nil {
		tb.Fatalf("etcd-dev start %s: %v\n%s", member, err, out)
	}
}

// Leader returns the leading member's name, waiting for an election under way.
func (c *Cluster) Leader(tb testing.TB) string {
	tb.Helper()
	out, err := c.run("leader")
	if err != nil {
		tb.Fatalf("etcd-dev leader: %v\n%s", err, out)
	}
	return strings.TrimSpace(lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// run calls the script; stdout and stderr come back apart so that the
// answer (stdout) is not mixed with progress messages.
func (c *Cluster) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Env = c.env
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}
