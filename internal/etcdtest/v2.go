package etcdtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	client "go.etcd.io/etcd/client/v2"
)

// V2Binary is Debian's etcd-server (3.4), the last etcd that serves the v2
// API (with --enable-v2): the API the original volplugin kept its state in.
const V2Binary = "/usr/bin/etcd"

// StartV2 runs Debian's etcd with the v2 API on free loopback ports and a
// data dir of its own for the duration of the test, and returns its client
// URL; it is stopped by its PID when the test ends. etcd-server is
// installed first if missing (scripts/etcd-v2 install, as root). Without
// root to install it the test is skipped, or fails when CI=true.
func StartV2(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(V2Binary); err != nil {
		install(tb)
	}
	var lastErr error
	// The free ports are found by listening and closing: another process
	// may take one meanwhile, and then this etcd exits at once.
	for range 3 {
		url, err := startV2(tb)
		if err == nil {
			return url
		}
		lastErr = err
	}
	tb.Fatalf("etcd v2: %v", lastErr)
	return ""
}

func install(tb testing.TB) {
	tb.Helper()
	skip := func(format string, args ...any) {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("etcd v2 (CI=true, not skipping): "+format, args...)
		}
		tb.Skipf("etcd v2: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("%s missing and installing etcd-server needs root", V2Binary)
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		skip("cannot find scripts/etcd-v2")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "etcd-v2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, script, "install").CombinedOutput(); err != nil {
		skip("%s install: %v\n%s", script, err, out)
	}
}

func startV2(tb testing.TB) (string, error) {
	// Fixed ports (FreePorts: below the ephemeral range, where another
	// test's :0 listener cannot take them before the server binds them).
	base, err := FreePorts(2)
	if err != nil {
		return "", err
	}
	client, peer := fmt.Sprintf("127.0.0.1:%d", base), fmt.Sprintf("127.0.0.1:%d", base+1)
	dir := tb.TempDir()
	clientURL, peerURL := "http://"+client, "http://"+peer
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command(V2Binary, "--name", "v2test", "--data-dir", filepath.Join(dir, "data"), "--enable-v2=true",
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "v2test="+peerURL, "--logger", "zap", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, its etcd dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-done:
			b, _ := os.ReadFile(logf.Name())
			return "", fmt.Errorf("exited at start (%v):\n%s", err, b)
		default:
		}
		if resp, err := hc.Get(clientURL + "/v2/keys/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				tb.Cleanup(stop)
				return clientURL, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("not serving the v2 API at %s within %s", clientURL, startTimeout)
		}
		time.Sleep(50 * time.Millisecond) // polling interval while etcd starts
	}
}

// v2Node is a node of an etcd v2 dump.
type v2Node struct {
	Key   string    `json:"key"`
	Dir   bool      `json:"dir"`
	Value string    `json:"value"`
	TTL   int64     `json:"ttl"`
	Nodes []*v2Node `json:"nodes"`
}

// LoadV2 writes the tree of an etcd v2 dump (the answer of GET
// /v2/keys/PREFIX?recursive=true) into the etcd v2 at url, directories
// (empty ones too) and keys with their TTLs, through the v2 client.
func LoadV2(tb testing.TB, url, dumpFile string) {
	tb.Helper()
	b, err := os.ReadFile(dumpFile)
	if err != nil {
		tb.Fatal(err)
	}
	var d struct {
		Node *v2Node `json:"node"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Node == nil {
		tb.Fatalf("%s: not an etcd v2 dump: %v", dumpFile, err)
	}
	kapi := v2Keys(tb, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var load func(n *v2Node)
	load = func(n *v2Node) {
		if n.Dir {
			if _, err := kapi.Set(ctx, n.Key, "", &client.SetOptions{Dir: true, PrevExist: client.PrevIgnore}); err != nil && !isExists(err) {
				tb.Fatalf("mkdir %s: %v", n.Key, err)
			}
			for _, c := range n.Nodes {
				load(c)
			}
			return
		}
		if _, err := kapi.Set(ctx, n.Key, n.Value, &client.SetOptions{TTL: time.Duration(n.TTL) * time.Second}); err != nil {
			tb.Fatalf("set %s: %v", n.Key, err)
		}
	}
	load(d.Node)
}

// PutV2 sets key to value (with a TTL if not zero) in the etcd v2 at url.
func PutV2(tb testing.TB, url, key, value string, ttl time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := v2Keys(tb, url).Set(ctx, key, value, &client.SetOptions{TTL: ttl}); err != nil {
		tb.Fatalf("set %s: %v", key, err)
	}
}

// DeleteV2 deletes key from the etcd v2 at url.
func DeleteV2(tb testing.TB, url, key string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := v2Keys(tb, url).Delete(ctx, key, nil); err != nil {
		tb.Fatalf("delete %s: %v", key, err)
	}
}

func v2Keys(tb testing.TB, url string) client.KeysAPI {
	tb.Helper()
	c, err := client.New(client.Config{Endpoints: []string{url}, HeaderTimeoutPerRequest: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return client.NewKeysAPI(c)
}

func isExists(err error) bool {
	var ce client.Error
	return errors.As(err, &ce) && (ce.Code == client.ErrorCodeNodeExist || ce.Code == client.ErrorCodeNotFile)
}
