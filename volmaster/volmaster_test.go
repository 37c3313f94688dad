package volmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

type harness struct {
	srv       *Server
	url       string
	dataDir   string
	mountRoot string
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// start runs a volmaster with the real local backend against embedded etcd.
func start(t testing.TB) *harness {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	dataDir, mountRoot := t.TempDir(), t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: mountRoot})
	if err != nil {
		t.Fatal(err)
	}
	srv, url := serve(t, Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{config.BackendLocal: lb},
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb}})
	return &harness{srv: srv, url: url, dataDir: dataDir, mountRoot: mountRoot}
}

// serve runs a volmaster with cfg (quiet unless cfg has a log) behind a
// test HTTP server until the test ends, and returns it with its URL.
func serve(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	srv, err := New(cfg)
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
	return srv, ts.URL
}

func (h *harness) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) must(t testing.TB, want int, method, path, body string) string {
	t.Helper()
	code, out := h.do(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, out)
	}
	return out
}

func (h *harness) dump(t testing.TB) map[string]string {
	t.Helper()
	d, err := h.srv.Store().Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const localPolicy = `{"backend":"local","create":{"size":"10MB"}}`

func TestPolicyRevisionsAndVolumesSurvivePolicyChanges(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/policy1", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"policy1","name":"test"}`)
	h.must(t, 200, "PUT", "/v1/policies/policy1", `{"backend":"local","create":{"size":"20MB"}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"policy1","name":"test2"}`)

	var refs []config.VolumeRef
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes", "")), &refs)
	want := []config.VolumeRef{{Policy: "policy1", Name: "test"}, {Policy: "policy1", Name: "test2"}}
	if !reflect.DeepEqual(refs, want) {
		t.Fatalf("volumes = %v, want %v", refs, want)
	}
	var v config.Volume
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/policy1/test", "")), &v)
	if v.Create.Size != "10MB" || v.PolicyRevision != 1 || v.Backends.CRUD != "local" {
		t.Errorf("policy1/test = %+v, want the first policy's 10MB", v)
	}
	// Deleting the policy orphans nothing.
	h.must(t, 204, "DELETE", "/v1/policies/policy1", "")
	h.must(t, 404, "GET", "/v1/policies/policy1", "")
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/policy1", "")), &refs)
	if len(refs) != 2 {
		t.Errorf("after policy delete, volumes = %v", refs)
	}
	var revs []config.PolicyRevision
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/policies/policy1/revisions", "")), &revs)
	if len(revs) != 2 || revs[0].Revision != 1 || revs[1].Revision != 2 {
		t.Fatalf("revisions = %+v", revs)
	}
	var p config.Policy
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/policies/policy1/revisions/1", "")), &p)
	if p.Create.Size != "10MB" {
		t.Errorf("revision 1 = %+v", p)
	}
	h.must(t, 404, "GET", "/v1/policies/policy1/revisions/3", "")
	// Numbering continues after a re-upload.
	h.must(t, 200, "PUT", "/v1/policies/policy1", localPolicy)
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/policies/policy1/revisions", "")), &revs)
	if len(revs) != 3 || revs[2].Revision != 3 {
		t.Errorf("revisions after re-upload = %+v", revs)
	}
}

func TestNotFoundPaths(t *testing.T) {
	h := start(t)
	before := h.dump(t)
	for _, p := range []struct{ method, path string }{
		{"GET", "/v1/policies/nope"}, {"DELETE", "/v1/policies/nope"},
		{"GET", "/v1/policies/nope/revisions"}, {"GET", "/v1/policies/nope/revisions/1"},
		{"GET", "/v1/volumes/p/nope"}, {"DELETE", "/v1/volumes/p/nope"}, {"DELETE", "/v1/volumes/p/nope?force=true"},
		{"GET", "/v1/volumes/p/nope/runtime"}, {"GET", "/v1/uses/p/nope"}, {"DELETE", "/v1/uses/p/nope"},
		{"GET", "/v1/nothing"},
	} {
		code, body := h.do(t, p.method, p.path, "")
		var eb config.ErrorBody
		if code != 404 || json.Unmarshal([]byte(body), &eb) != nil || eb.Code != config.CodeNotFound || eb.Error == "" {
			t.Errorf("%s %s = %d %s, want 404 not-found", p.method, p.path, code, body)
		}
	}
	h.must(t, 404, "PUT", "/v1/volumes/p/nope/runtime", `{"snapshots":false}`)
	h.must(t, 404, "POST", "/v1/volumes", `{"policy":"nope","name":"v"}`)
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Errorf("etcd changed by failed requests:\n%v\n%v", before, after)
	}
}

func TestInvalidInputChangesNothing(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	before := h.dump(t)
	long := strings.Repeat("x", 65)
	cases := []struct{ method, path, body string }{
		{"PUT", "/v1/policies/p", ``},
		{"PUT", "/v1/policies/p", `{`},
		{"PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"0"}}`},
		{"PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"-1MB"}}`},
		{"PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"extra":1}`},
		{"PUT", "/v1/policies/" + long, localPolicy},
		{"PUT", "/v1/policies/a%20b", localPolicy},
		{"POST", "/v1/volumes", ``},
		{"POST", "/v1/volumes", `not json`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v2","options":{"size":"lots"}}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v2","options":{"size":"0"}}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v2","options":{"colour":"red"}}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"a/b"}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":".."}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"` + long + `"}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v2","bogus":true}`},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v2"}{}`},
		{"PUT", "/v1/volumes/p/v/runtime", `{"snapshots":true}`},
		{"PUT", "/v1/volumes/p/v/runtime", `[]`},
		{"PUT", "/v1/global", `{"TTL":-4}`},
		{"PUT", "/v1/global", ``},
		{"GET", "/v1/policies/p/revisions/0", ``},
		{"GET", "/v1/policies/p/revisions/x", ``},
		{"DELETE", "/v1/volumes/p/v?force=maybe", ``},
	}
	for _, c := range cases {
		code, body := h.do(t, c.method, c.path, c.body)
		var eb config.ErrorBody
		if code != 400 || json.Unmarshal([]byte(body), &eb) != nil || eb.Code != config.CodeInvalid {
			t.Errorf("%s %s %q = %d %s, want 400 invalid", c.method, c.path, c.body, code, body)
		}
	}
	// A size the backend cannot hold is bad input too, and rolls back.
	h.must(t, 400, "POST", "/v1/volumes", `{"policy":"p","name":"huge","options":{"size":"1024PB"}}`)
	// A body shorter than its Content-Length.
	for _, path := range []string{"/v1/policies/p", "/v1/volumes", "/v1/global"} {
		method := "PUT"
		if path == "/v1/volumes" {
			method = "POST"
		}
		if code := truncated(t, h.url, method, path, `{"backend":"local","create":{"size":"10MB"}}`); code != 400 {
			t.Errorf("truncated %s %s = %d, want 400", method, path, code)
		}
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Errorf("etcd changed by invalid requests")
	}
	images, _ := filepath.Glob(filepath.Join(h.dataDir, "images", "p", "*"))
	if len(images) != 1 {
		t.Errorf("images = %v, want only v's", images)
	}
}

// truncated sends a request that announces more body than it sends, then
// half-closes the connection, and returns the status code.
func truncated(t *testing.T, base, method, path, body string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, path, len(body)+20, body)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

func TestConcurrentCreateOneWins(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	const n = 50
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(h.url+"/v1/volumes", "application/json", strings.NewReader(`{"policy":"p","name":"same"}`))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[409] != n-1 {
		t.Fatalf("status counts = %v, want one 201 and %d 409", count, n-1)
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "images", "p", "same.img")); err != nil {
		t.Errorf("image of the winner: %v", err)
	}
}

func TestCreateRollsBackWhenBackendFails(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	before := h.dump(t)
	// A real fault: the policy's image directory is a file, so the image
	// cannot be created.
	if err := os.MkdirAll(filepath.Join(h.dataDir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dataDir, "images", "p"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, body := h.do(t, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	if code < 500 {
		t.Fatalf("create with broken backend = %d %s", code, body)
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Errorf("failed create left records behind: %v", after)
	}
	h.must(t, 404, "GET", "/v1/volumes/p/v", "")
	// An image that exists without a record is a conflict, and no record stays.
	if err := os.Remove(filepath.Join(h.dataDir, "images", "p")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.dataDir, "images", "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dataDir, "images", "p", "v.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.must(t, 409, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Errorf("conflicting create left records behind")
	}
}

func TestRemove(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	img := filepath.Join(h.dataDir, "images", "p", "v.img")
	if _, err := os.Stat(img); err != nil {
		t.Fatal(err)
	}
	// A mount lock (as volplugin will write it) blocks removal.
	ctx := context.Background()
	keys := h.srv.Store().Keys()
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	if _, err := h.srv.Store().Client().Put(ctx, keys.Use(ref), `{"volume":{"policy":"p","name":"v"},"hostname":"host1"}`); err != nil {
		t.Fatal(err)
	}
	code, body := h.do(t, "DELETE", "/v1/volumes/p/v", "")
	if code != 409 || !strings.Contains(body, "host1") {
		t.Fatalf("remove while mounted = %d %s", code, body)
	}
	var uses []config.Use
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/uses", "")), &uses)
	if len(uses) != 1 || uses[0].Hostname != "host1" {
		t.Fatalf("uses = %+v", uses)
	}
	h.must(t, 200, "GET", "/v1/uses/p/v", "")
	h.must(t, 204, "DELETE", "/v1/uses/p/v", "")
	h.must(t, 200, "DELETE", "/v1/volumes/p/v", "")
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("image still there after remove: %v", err)
	}
	// schema, policy, its revision and head, and of v only its trash entry
	if d := h.dump(t); len(d) != 5 || len(keysWith(d, "/volplugin/trash/p/v/")) != 1 {
		t.Errorf("keys left after remove: %v", d)
	}
	// Force removes only the record.
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"w"}`)
	h.must(t, 204, "DELETE", "/v1/volumes/p/w?force=true", "")
	h.must(t, 404, "GET", "/v1/volumes/p/w", "")
	if _, err := os.Stat(filepath.Join(h.dataDir, "images", "p", "w.img")); err != nil {
		t.Errorf("force remove touched the image: %v", err)
	}
}

func TestRuntimeAndGlobal(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"30m","keep":20}}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v","options":{"snapshot.keep":"3"}}`)
	var rt config.RuntimeOptions
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v/runtime", "")), &rt)
	if !rt.Snapshots || rt.Snapshot.Keep != 3 {
		t.Errorf("runtime = %+v", rt)
	}
	h.must(t, 200, "PUT", "/v1/volumes/p/v/runtime", `{"rate-limit":{"write-bps":1000,"read-bps":10}}`)
	var v config.Volume
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v", "")), &v)
	if v.Runtime.Snapshots || v.Runtime.RateLimit.WriteBPS != 1000 || v.Runtime.RateLimit.ReadBPS != 10 {
		t.Errorf("volume runtime after upload = %+v", v.Runtime)
	}
	var g config.Global
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/global", "")), &g)
	if g != config.DefaultGlobal() {
		t.Errorf("default global = %+v", g)
	}
	h.must(t, 200, "PUT", "/v1/global", `{"TTL":5,"Debug":true,"Timeout":1}`)
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/global", "")), &g)
	if g.TTL != 5 || !g.Debug || g.Timeout != 1 || g.MountPath != config.DefaultMountPath {
		t.Errorf("global = %+v", g)
	}
	// The server picks the change up through its watch.
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.log.GetLevel() != logrus.DebugLevel || h.srv.timeout() != time.Minute {
		if time.Now().After(deadline) {
			t.Fatal("volmaster did not apply the new global config")
		}
		runtimeGosched()
	}
	h.must(t, 200, "GET", "/healthz", "")
	var info Info
	if err := json.Unmarshal([]byte(h.must(t, 200, "GET", "/info", "")), &info); err != nil ||
		info.Process.Daemon != "volmaster" || info.Process.GoVersion == "" || info.Volumes != 1 || info.Global.TTL != 5 {
		t.Errorf("GET /info = %+v, %v", info, err)
	}
}

func TestListDetail(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/a", localPolicy)
	h.must(t, 200, "PUT", "/v1/policies/b", localPolicy)
	for _, r := range []string{"a/x", "b/y", "a/w"} {
		p, n, _ := strings.Cut(r, "/")
		h.must(t, 201, "POST", "/v1/volumes", fmt.Sprintf(`{"policy":%q,"name":%q}`, p, n))
	}
	var vols []config.Volume
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes?detail=true", "")), &vols)
	if len(vols) != 3 || vols[0].Name != "w" || vols[2].Policy != "b" || vols[0].Create.Size != "10MB" {
		t.Errorf("detail list = %+v", vols)
	}
	var names []string
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/policies", "")), &names)
	if !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Errorf("policies = %v", names)
	}
	var refs []config.VolumeRef
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/a", "")), &refs)
	if len(refs) != 2 {
		t.Errorf("volumes of a = %v", refs)
	}
	body := h.must(t, 200, "GET", "/v1/volumes/a/x", "")
	if !bytes.Contains([]byte(body), []byte(`"filesystems"`)) {
		t.Errorf("full record lacks the filesystems copy: %s", body)
	}
}

func TestEtcdDownIs503(t *testing.T) {
	_, srvEtcd := etcdtest.StartServer(t, etcdserver.Config{Fast: true})
	link := etcdtest.NewLink(t, srvEtcd.Endpoints[0])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{link.URL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	keys, _ := config.NewKeys("")
	srv, url := serve(t, Config{Client: cli, Keys: keys, EtcdTimeout: time.Second})
	h := &harness{srv: srv, url: url}
	h.must(t, 200, "GET", "/v1/volumes", "")
	link.Cut()
	// Reads stop being served from the cache once it cannot confirm etcd.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := h.do(t, "GET", "/v1/volumes", "")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/volumes with etcd down = %d, want 503", code)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/policies/p", localPolicy},
		{"POST", "/v1/volumes", `{"policy":"p","name":"v"}`},
		{"GET", "/healthz", ""},
	} {
		code, body := h.do(t, c.method, c.path, c.body)
		var e config.ErrorBody
		// Every 503 carries the usual error body, /healthz's included.
		if code != 503 || json.Unmarshal([]byte(body), &e) != nil || e.Code != "unavailable" || !strings.Contains(e.Error, "etcd") {
			t.Errorf("%s %s with etcd down = %d %s, want 503 with an etcd error, code unavailable", c.method, c.path, code, body)
		}
	}
	// And the cache serves again once etcd is back.
	link.Restore()
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, _ := h.do(t, "GET", "/v1/volumes", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/volumes after etcd came back = %d, want 200", code)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// keysWith returns the keys of d that start with prefix.
func keysWith(d map[string]string, prefix string) []string {
	var out []string
	for k := range d {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// A policy whose backend this volmaster does not run: creating a volume is
// 503 with the message the troubleshooting guide lists, and changes nothing.
func TestCreateOnBackendNotConfiguredIs503(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/c", `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"10MB"}}`)
	before := h.dump(t)
	code, body := h.do(t, "POST", "/v1/volumes", `{"policy":"c","name":"v"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "backend ceph is not configured on this volmaster") ||
		!strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("create on a missing backend = %d %s", code, body)
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Errorf("failed create left records behind: %v", after)
	}
}
