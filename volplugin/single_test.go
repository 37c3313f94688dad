package volplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A second volplugin on a host is refused before it reads the state file or
// touches the socket: whether it shares the first one's state directory or
// only its socket. The first keeps serving.
func TestSecondVolpluginRefused(t *testing.T) {
	c := startCluster(t)
	a := c.startHost(t, "hostA", t.TempDir(), false)
	serve := func(stateDir, sockDir string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return Serve(ctx, Options{
			Volmaster: c.url, PluginName: "volplugin", SocketDir: sockDir, Host: "hostA",
			MountRoot: t.TempDir(), StateDir: stateDir, LocalDataDir: c.dataDir, Log: quiet(),
			Started: func(string) { cancel() },
		})
	}
	err := serve(filepath.Join(c.stateDir, "hostA"), t.TempDir())
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second volplugin on the same state dir: %v, want ErrRunning naming pid %d", err, os.Getpid())
	}
	err = serve(t.TempDir(), filepath.Dir(a.sock))
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), a.sock) {
		t.Errorf("second volplugin on the same socket: %v, want ErrRunning naming %s", err, a.sock)
	}
	if _, e := a.call(t, "List", map[string]string{}); e != "" {
		t.Errorf("the first volplugin stopped answering: %s", e)
	}
}

// A socket file left by a crash (nothing listens) is replaced.
func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the stale socket file should remain: %v", err)
	}
	if err := checkSocketFree(path); err != nil {
		t.Errorf("stale socket: %v", err)
	}
	if err := checkSocketFree(filepath.Join(t.TempDir(), "none.sock")); err != nil {
		t.Errorf("no socket: %v", err)
	}
}
