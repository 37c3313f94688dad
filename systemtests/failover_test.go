package systemtests

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// socketClient speaks HTTP over a volplugin's unix socket.
func socketClient(sock string) *http.Client {
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// pluginCall sends one Docker plugin request (VolumeDriver.method) to a
// volplugin socket and returns the answer and its Err (or the transport
// error's text).
func pluginCall(tb testing.TB, sock, method string, body any) (map[string]any, string) {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := socketClient(sock).Post("http://plugin/VolumeDriver."+method, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	e, _ := out["Err"].(string)
	return out, e
}

// pluginInfo reads GET /info from a volplugin socket.
func pluginInfo(t *testing.T, sock string) map[string]any {
	t.Helper()
	resp, err := socketClient(sock).Get("http://plugin/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Two Docker hosts on one machine, each with its own volplugin: while host A
// has the volume mounted host B's mount fails naming A; after A's volplugin
// is killed with -9, B mounts once A's lease has expired and reads A's data.
func TestTwoHostsFailoverAfterKill9(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, namespaces, loop devices and mounts")
	}
	const ttl = 3
	data := t.TempDir()
	vm := startVolmaster(t, data)
	if _, e, code := volcli(t, vm.URL, `{"TTL": 3, "Timeout": 1}`, "global", "upload"); code != 0 {
		t.Fatalf("global upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"32MB"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-two"
	sockA, sockB := filepath.Join(data, "plugins-a"), filepath.Join(data, "plugins-b")
	mntA, mntB := filepath.Join(data, "mnt-a"), filepath.Join(data, "mnt-b")
	for _, d := range []string{sockA, sockB, mntA, mntB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vpA := startVolplugin(t, vm, data, plugin, "hostA", "--socket-dir", sockA, "--mount-root", mntA)
	startVolplugin(t, vm, data, plugin, "hostB", "--socket-dir", sockB, "--mount-root", mntB)
	dA := dockertest.Start(t, "vp-two-a", dockertest.WithPluginsDir(sockA), dockertest.WithSharedMount(mntA))
	dB := dockertest.Start(t, "vp-two-b", dockertest.WithPluginsDir(sockB), dockertest.WithSharedMount(mntB))
	img := dA.Image(t)
	dB.Image(t)

	docker(t, dA, "volume", "create", "-d", plugin, "policy1/db")
	docker(t, dB, "volume", "create", "-d", plugin, "policy1/db")
	docker(t, dA, "run", "-d", "--name", "holder", "-v", "policy1/db:/data", img, "sh", "-c", "echo fromA > /data/f && sync && sleep 300")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, err := dA.Docker(context.Background(), "exec", "holder", "cat", "/data/f")
		if err == nil && out == "fromA\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host A's container never wrote its file: %q %v", out, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	_, errOut, err := dB.Docker(context.Background(), "run", "--rm", "-v", "policy1/db:/data", img, "cat", "/data/f")
	if err == nil || !strings.Contains(errOut, `mounted on host "hostA"`) {
		t.Fatalf("host B mounted while host A holds the volume: err %v, stderr %s", err, errOut)
	}

	if err := vpA.signal(syscall.SIGKILL); err == nil {
		t.Fatal("volplugin A survived SIGKILL?")
	}
	killed := time.Now()
	var out string
	for {
		out, errOut, err = dB.Docker(context.Background(), "run", "--rm", "-v", "policy1/db:/data", img, "cat", "/data/f")
		if err == nil {
			break
		}
		if !strings.Contains(errOut, "hostA") || time.Since(killed) > ttl*time.Second+30*time.Second {
			t.Fatalf("host B after A's death: %v %s", err, errOut)
		}
	}
	// How long it took is BenchmarkFailoverAfterKill9's figure; the loop's
	// deadline only bounds the wait.
	t.Logf("failover after kill -9: host B's container ran %s after the kill (TTL %ds)", time.Since(killed).Round(10*time.Millisecond), ttl)
	if out != "fromA\n" {
		t.Errorf("host B read %q, want host A's data", out)
	}

	// Host A's volplugin restarts and re-adopts its old mount (its container
	// still runs); B's container is gone, so A takes the lock back under its
	// new lease, and the mount is released when A's container goes.
	vpA2 := startVolplugin(t, vm, data, plugin, "hostA", "--socket-dir", sockA, "--mount-root", mntA)
	info := pluginInfo(t, vpA2.lines["volplugin socket"])
	mounts, _ := info["mounts"].([]any)
	if len(mounts) != 1 || !strings.Contains(toJSON(mounts[0]), "policy1/db") {
		t.Fatalf("restarted volplugin A re-adopted %v", info["mounts"])
	}
	docker(t, dA, "rm", "-f", "holder")
	deadline = time.Now().Add(15 * time.Second)
	for {
		if _, _, code := volcli(t, vm.URL, "", "use", "get", "policy1/db"); code == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lock still held after host A's container went")
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	docker(t, dA, "volume", "rm", "policy1/db")
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
