package volplugin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/volmaster"
)

// cluster is a volmaster on embedded etcd whose local backend keeps images
// in dataDir, for volplugin "hosts" to share.
type cluster struct {
	url     string
	api     *client.Client
	dataDir string
	// stateDir holds each host's state dir (by host name), kept across
	// its restarts.
	stateDir string
	ts       *httptest.Server
	// etcd is the embedded etcd's client URL (its /metrics).
	etcd string
}

// down makes volmaster unreachable, as a stopped process: new connections
// are refused and open ones closed.
func (c *cluster) down() {
	c.ts.Listener.Close()
	c.ts.CloseClientConnections()
}

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
}

func startCluster(t testing.TB) *cluster {
	return startClusterWith(t, nil)
}

// startClusterWith is startCluster whose volmaster also has the backends in
// more (the Ceph benchmark's).
func startClusterWith(t testing.TB, more map[string]storage.CRUD) *cluster {
	t.Helper()
	cli, eps := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	dataDir := t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	backends := map[string]storage.CRUD{config.BackendLocal: lb}
	maps.Copy(backends, more)
	srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	api, _ := client.New(ts.URL)
	if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 2, "Timeout": 1}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PutPolicy(ctx, "policy1", []byte(`{"backend":"local","create":{"size":"32MB"}}`)); err != nil {
		t.Fatal(err)
	}
	return &cluster{url: ts.URL, api: api, dataDir: dataDir, stateDir: t.TempDir(), ts: ts, etcd: eps[0]}
}

// host is one volplugin instance, spoken to over its socket with Docker's
// plugin protocol.
type host struct {
	name, sock, mountRoot string
	metricsURL            string
	stop                  func()
	hc                    *http.Client
}

func (c *cluster) startHost(t testing.TB, name, mountRoot string, maintenance bool) *host {
	t.Helper()
	return c.startHostWith(t, name, mountRoot, Options{Maintenance: maintenance})
}

// startHostWith starts a volplugin with extra options (health, maintenance).
func (c *cluster) startHostWith(t testing.TB, name, mountRoot string, extra Options) *host {
	t.Helper()
	sockDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	started, metrics := make(chan string, 1), make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Options{
			Volmaster: c.url, PluginName: "volplugin", SocketDir: sockDir, Host: name,
			MountRoot: mountRoot, StateDir: cmp.Or(extra.StateDir, filepath.Join(c.stateDir, name)), LocalDataDir: c.dataDir, Maintenance: extra.Maintenance, Health: extra.Health, Log: quiet(),
			CephConf: extra.CephConf, CephMapper: extra.CephMapper, CephRunDir: extra.CephRunDir,
			MetricsListen: "127.0.0.1:0", MetricsStarted: func(u string) { metrics <- u },
			Started: func(s string) { started <- s },
		})
	}()
	var sock string
	select {
	case sock = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("volplugin %s did not start: %v", name, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("volplugin %s did not start in 30s", name)
	}
	// The metrics listener starts before the socket.
	h := &host{name: name, sock: sock, mountRoot: mountRoot, metricsURL: <-metrics}
	h.hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	t.Cleanup(h.stop)
	return h
}

// call posts one plugin request and returns the decoded answer and its Err.
func (h *host) call(t testing.TB, method string, req any) (map[string]any, string) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := h.hc.Post("http://plugin/VolumeDriver."+method, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s %s: %v", h.name, method, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	errMsg, _ := out["Err"].(string)
	return out, errMsg
}

func (h *host) mount(t testing.TB, name, id string) string {
	t.Helper()
	out, e := h.call(t, "Mount", map[string]string{"Name": name, "ID": id})
	if e != "" {
		t.Fatalf("%s: Mount %s %s: %s", h.name, name, id, e)
	}
	return out["Mountpoint"].(string)
}

func (h *host) unmount(t testing.TB, name, id string) {
	t.Helper()
	if _, e := h.call(t, "Unmount", map[string]string{"Name": name, "ID": id}); e != "" {
		t.Fatalf("%s: Unmount %s %s: %s", h.name, name, id, e)
	}
}

func (h *host) info(t *testing.T) Info {
	t.Helper()
	resp, err := h.hc.Get("http://plugin/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info Info
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}

// unmountAll is a safety net: whatever a failed test left mounted under root
// is unmounted and its loop device detached.
func unmountAll(t testing.TB, root string, dataDir string) {
	t.Cleanup(func() {
		lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: root})
		if err != nil {
			return
		}
		ctx := context.Background()
		mounts, _ := lb.Mounted(ctx)
		for _, m := range mounts {
			_ = lb.Unmount(ctx, storage.Volume{Policy: m.Volume.Policy, Name: m.Volume.Name})
		}
	})
}

func TestMountLockRefCountAndSecondHost(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	rootA, rootB := t.TempDir(), t.TempDir()
	unmountAll(t, rootA, c.dataDir)
	unmountAll(t, rootB, c.dataDir)
	a := c.startHost(t, "hostA", rootA, false)
	b := c.startHost(t, "hostB", rootB, false)

	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/db", "Opts": map[string]string{"size": "64MB"}}); e != "" {
		t.Fatalf("Create: %s", e)
	}
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/bad", "Opts": map[string]string{"colour": "red"}}); !strings.Contains(e, "unknown option") {
		t.Errorf("Create with an unknown option: %q", e)
	}
	if out, e := a.call(t, "Capabilities", nil); e != "" || !strings.Contains(toJSON(out), `"global"`) {
		t.Errorf("Capabilities = %v %s", out, e)
	}
	p1 := a.mount(t, "policy1/db", "id1")
	if err := os.WriteFile(filepath.Join(p1, "hello"), []byte("from A"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p2 := a.mount(t, "policy1/db", "id2"); p2 != p1 {
		t.Errorf("second mount path %q, want %q", p2, p1)
	}
	a.mount(t, "policy1/db", "id2") // docker cp repeats an ID
	if _, e := b.call(t, "Mount", map[string]string{"Name": "policy1/db", "ID": "idB"}); !strings.Contains(e, `"hostA"`) {
		t.Fatalf("hostB mount while hostA holds it: %q, want an error naming hostA", e)
	}
	out, _ := a.call(t, "Get", map[string]string{"Name": "policy1/db"})
	if s := toJSON(out); !strings.Contains(s, `"locked-by":"hostA"`) || !strings.Contains(s, p1) {
		t.Errorf("Get = %s", s)
	}
	if _, e := a.call(t, "Remove", map[string]string{"Name": "policy1/db"}); !strings.Contains(e, "mounted") {
		t.Errorf("Remove while mounted: %q", e)
	}
	// An unknown ID (an Unmount after a failed Mount) unmounts nothing.
	a.unmount(t, "policy1/db", "never-mounted")
	a.unmount(t, "policy1/db", "id1")
	if _, err := os.Stat(filepath.Join(p1, "hello")); err != nil {
		t.Fatalf("volume unmounted while id2 still uses it: %v", err)
	}
	a.unmount(t, "policy1/db", "id2")
	if _, err := os.Stat(filepath.Join(p1, "hello")); err == nil {
		t.Fatal("still mounted after the last unmount")
	}
	if _, err := c.api.Use(context.Background(), config.VolumeRef{Policy: "policy1", Name: "db"}); err == nil {
		t.Fatal("lock left after the last unmount")
	}
	pb := b.mount(t, "policy1/db", "idB")
	if got, err := os.ReadFile(filepath.Join(pb, "hello")); err != nil || string(got) != "from A" {
		t.Fatalf("hostB reads %q, %v", got, err)
	}
	b.unmount(t, "policy1/db", "idB")
	if _, e := b.call(t, "Remove", map[string]string{"Name": "policy1/db"}); e != "" {
		t.Fatalf("Remove: %s", e)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "images", "policy1", "db.img")); !os.IsNotExist(err) {
		t.Errorf("image after Remove: %v", err)
	}
}

func TestFailoverAfterHostDies(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	rootA, rootB := t.TempDir(), t.TempDir()
	unmountAll(t, rootA, c.dataDir)
	unmountAll(t, rootB, c.dataDir)
	a := c.startHost(t, "hostA", rootA, false)
	b := c.startHost(t, "hostB", rootB, false)
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/db"}); e != "" {
		t.Fatal(e)
	}
	p := a.mount(t, "policy1/db", "id1")
	if err := os.WriteFile(filepath.Join(p, "data"), []byte("A was here"), 0o644); err != nil {
		t.Fatal(err)
	}
	// hostA dies: it stops renewing its lease but its mount stays.
	a.stop()
	died := time.Now()
	var pb string
	for {
		out, e := b.call(t, "Mount", map[string]string{"Name": "policy1/db", "ID": "idB"})
		if e == "" {
			pb = out["Mountpoint"].(string)
			break
		}
		if !strings.Contains(e, "hostA") || time.Since(died) > 10*time.Second {
			t.Fatalf("hostB mount: %s", e)
		}
		time.Sleep(100 * time.Millisecond) // polling interval while hostA's lease runs out
	}
	t.Logf("failover took %s (TTL 2s)", time.Since(died).Round(10*time.Millisecond))
	if got, _ := os.ReadFile(filepath.Join(pb, "data")); string(got) != "A was here" {
		t.Fatalf("hostB reads %q", got)
	}
	b.unmount(t, "policy1/db", "idB")
}

func TestRestartReadoptsMountsAndMaintenance(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	a := c.startHost(t, "hostA", root, false)
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/db"}); e != "" {
		t.Fatal(e)
	}
	p := a.mount(t, "policy1/db", "id1")
	a.stop()
	a2 := c.startHost(t, "hostA", root, true)
	info := a2.info(t)
	if len(info.Mounts) != 1 || info.Mounts[0].Path != p || strings.Join(info.Mounts[0].MountIDs, ",") != "id1" || !info.Maintenance {
		t.Fatalf("after restart info = %+v", info)
	}
	// The lock moves to the new lease once it is granted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := c.api.Use(context.Background(), config.VolumeRef{Policy: "policy1", Name: "db"})
		if err == nil && u.Lease == a2.info(t).Lease.ID && u.Lease != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock not moved to the new lease: %+v %v", u, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if _, e := a2.call(t, "Create", map[string]any{"Name": "policy1/other"}); e != "" {
		t.Fatal(e)
	}
	if _, e := a2.call(t, "Mount", map[string]string{"Name": "policy1/other", "ID": "x"}); !strings.Contains(e, "maintenance") {
		t.Errorf("mount in maintenance mode: %q", e)
	}
	fams := a2.scrape(t)
	must(t, fams, 1, "volplugin_mounts_refused_total", "reason=maintenance")
	must(t, fams, 0, "volplugin_mounts_refused_total", "reason=health")
	must(t, fams, 1, "volplugin_healthy")
	a2.unmount(t, "policy1/db", "id1")
	if len(a2.info(t).Mounts) != 0 {
		t.Error("still mounted after unmount")
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func newHTTPServer(tb testing.TB, srv *volmaster.Server) string {
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	return ts.URL
}

// Past its failure threshold volplugin refuses new mounts (existing ones
// stay), says why in /healthz and /info, and tells the webhook.
func TestSelfHealthRefusesNewMounts(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	hooks := make(chan Health, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h Health
		_ = json.NewDecoder(r.Body).Decode(&h)
		hooks <- h
	}))
	defer hook.Close()
	// A policy whose mkfs always fails: a real failure of this host's work.
	if _, _, err := c.api.PutPolicy(context.Background(), "broken", []byte(`{"backend":"local","create":{"size":"16MB","filesystem":"nofs"},"filesystems":{"nofs":["false"]}}`)); err != nil {
		t.Fatal(err)
	}
	a := c.startHostWith(t, "hostA", root, Options{Health: HealthLimits{MountFailures: 2, Webhook: hook.URL}})
	for _, n := range []string{"policy1/good", "broken/b1"} {
		if _, e := a.call(t, "Create", map[string]any{"Name": n}); e != "" {
			t.Fatal(e)
		}
	}
	a.mount(t, "policy1/good", "g1")
	for i := range 2 {
		if _, e := a.call(t, "Mount", map[string]string{"Name": "broken/b1", "ID": fmt.Sprint(i)}); e == "" {
			t.Fatal("mount with a failing mkfs succeeded")
		}
	}
	if _, e := a.call(t, "Create", map[string]any{"Name": "policy1/new"}); e != "" {
		t.Fatal(e)
	}
	if _, e := a.call(t, "Mount", map[string]string{"Name": "policy1/new", "ID": "n1"}); !strings.Contains(e, "unhealthy") {
		t.Fatalf("new mount on an unhealthy host: %q", e)
	}
	// The existing mount still takes more containers.
	a.mount(t, "policy1/good", "g2")
	resp, err := a.hc.Get("http://plugin/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/healthz = %d, want 503", resp.StatusCode)
	}
	if info := a.info(t); info.Health.Healthy || len(info.Health.Reasons) == 0 {
		t.Errorf("/info health = %+v", info.Health)
	}
	fams := a.scrape(t)
	must(t, fams, 0, "volplugin_healthy")
	must(t, fams, 1, "volplugin_mounts_refused_total", "reason=health")
	// The failing mkfs is part of the backend's mount call; the second
	// container of policy1/good reused the mount without one.
	must(t, fams, 2, "volplugin_backend_call_duration_seconds", "backend=local", "op=mount", "result=error")
	must(t, fams, 1, "volplugin_backend_call_duration_seconds", "backend=local", "op=mount", "result=ok")
	select {
	case h := <-hooks:
		if h.Healthy || h.Host != "hostA" {
			t.Errorf("webhook got %+v", h)
		}
	case <-time.After(30 * time.Second):
		t.Error("no webhook call")
	}
	a.unmount(t, "policy1/good", "g1")
	a.unmount(t, "policy1/good", "g2")
}
