package systemtests

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the value of the first sample of name whose labels
// contain every one of labels ("" if absent).
func scrape(t testing.TB, url, name string, labels ...string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

func atLeast(t *testing.T, what, v string, min float64) {
	t.Helper()
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < min {
		t.Errorf("%s = %q, want at least %v", what, v, min)
	}
}

// After a create, a mount and a scheduled snapshot, each daemon's /metrics
// shows the counters moved.
func TestMetricsOfEveryDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	policy := `{"backend":"local","create":{"size":"16MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1s","keep":5}}}`
	if _, e, code := volcli(t, vm.URL, policy, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "create", "p/v"); code != 0 {
		t.Fatalf("create: %s", e)
	}
	vp := startVolplugin(t, vm, data, "vpsys-metrics", "hostA", "--socket-dir", filepath.Join(data, "plugins"))
	sup := startProc(t, "volsupervisor", []string{"--etcd", vm.EtcdURL, "--name", "s1", "--listen", "127.0.0.1:0",
		"--local-data-dir", filepath.Join(data, "local"), "--mount-root", filepath.Join(data, "mnt")}, "volsupervisor status", "volsupervisor")
	sock := vp.lines["volplugin socket"]
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	post := func(method, body string) {
		resp, err := hc.Post("http://plugin/VolumeDriver."+method, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post("Mount", `{"Name":"p/v","ID":"m1"}`)
	t.Cleanup(func() { post("Unmount", `{"Name":"p/v","ID":"m1"}`) })
	supURL := strings.TrimSuffix(sup.lines["volsupervisor status"], "/info") + "/metrics"
	deadline := time.Now().Add(20 * time.Second)
	// The counter exists at 0 from the start.
	taken := func() string { return scrape(t, supURL, "volsupervisor_snapshots_total", `result="taken"`) }
	for v := taken(); v == "" || v == "0"; v = taken() {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot counted by volsupervisor\n%s", sup.logs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	atLeast(t, "volsupervisor_snapshots_total{taken}", scrape(t, supURL, "volsupervisor_snapshots_total", `result="taken"`), 1)
	atLeast(t, "volsupervisor_leader", scrape(t, supURL, "volsupervisor_leader"), 1)

	vmURL := vm.URL + "/metrics"
	atLeast(t, "volmaster POST /v1/volumes 201", scrape(t, vmURL, "volmaster_http_requests_total", `route="/v1/volumes"`, `method="POST"`, `code="201"`), 1)
	atLeast(t, "volmaster_volumes", scrape(t, vmURL, "volmaster_volumes"), 1)
	atLeast(t, "volmaster create latency count", scrape(t, vmURL, "volmaster_backend_call_duration_seconds_count", `op="create"`, `result="ok"`), 1)
	atLeast(t, "volmaster lock route", scrape(t, vmURL, "volmaster_http_requests_total", `route="/v1/uses/{policy}/{name}"`, `method="PUT"`, `code="200"`), 1)

	vpURL := vp.lines["volplugin metrics"]
	atLeast(t, "volplugin_mounts_total{ok}", scrape(t, vpURL, "volplugin_mounts_total", `result="ok"`), 1)
	atLeast(t, "volplugin_mounts_active", scrape(t, vpURL, "volplugin_mounts_active"), 1)
	atLeast(t, "volplugin_lock_acquisitions_total{ok}", scrape(t, vpURL, "volplugin_lock_acquisitions_total", `result="ok"`), 1)
	atLeast(t, "volplugin_volume_free_bytes", scrape(t, vpURL, "volplugin_volume_free_bytes", `volume="p/v"`), 1<<20)
	atLeast(t, "volplugin_volume_written_bytes_total", scrape(t, vpURL, "volplugin_volume_written_bytes_total", `volume="p/v"`), 1)
	atLeast(t, "volplugin_mount_duration_seconds_count", scrape(t, vpURL, "volplugin_mount_duration_seconds_count"), 1)
}
