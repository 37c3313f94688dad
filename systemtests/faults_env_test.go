package systemtests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// faultEnv is one cluster for one row: a volmaster on fixed ports (so it can
// be killed and started again at the same address) and volplugin hosts.
type faultEnv struct {
	t                     *testing.T
	data                  string
	listen, etcd, peer    string
	vm                    *volmaster
	hosts                 map[string]*faultHost
	plugin                string
	ttl                   int
	logs                  []*proc
	volmasterURLForPlugin string
	vmExtra               []string // more volmaster flags (--ceph-conf)
}

type faultHost struct {
	name, sockDir, root string
	extra               []string
	p                   *proc
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newFaultEnv starts volmaster (with vmExtra flags) and uploads the global
// config and the local policy policy1.
func newFaultEnv(t *testing.T, plugin string, ttl int, vmExtra ...string) *faultEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the fault suite needs root for loop devices and mounts")
	}
	e := &faultEnv{t: t, data: t.TempDir(), listen: freePort(t), etcd: freePort(t), peer: freePort(t),
		hosts: map[string]*faultHost{}, plugin: plugin, ttl: ttl, vmExtra: vmExtra}
	e.startVolmaster()
	e.volmasterURLForPlugin = e.vm.URL
	if _, errOut, code := volcli(t, e.vm.URL, fmt.Sprintf(`{"TTL": %d, "Timeout": 1}`, ttl), "global", "upload"); code != 0 {
		t.Fatalf("global upload: %s", errOut)
	}
	if _, errOut, code := volcli(t, e.vm.URL, `{"backend":"local","create":{"size":"32MB","filesystem":"ext4"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", errOut)
	}
	t.Cleanup(e.cleanupLeftovers)
	return e
}

func (e *faultEnv) startVolmaster() { e.startVolmasterAt("") }

// startVolmasterAt starts volmaster stopping at faultpoint step ("": none).
func (e *faultEnv) startVolmasterAt(step string) {
	e.t.Helper()
	args := []string{"--listen", e.listen, "--data-dir", e.data, "--mount-root", filepath.Join(e.data, "mnt"),
		"--etcd-listen", "http://" + e.etcd, "--etcd-peer-listen", "http://" + e.peer}
	args = append(args, e.vmExtra...)
	p := startProcEnv(e.t, nil, faultEnvVar(step), "volmaster", args, "volmaster API", "etcd client URL")
	e.vm = &volmaster{proc: p, URL: p.lines["volmaster API"], EtcdURL: p.lines["etcd client URL"]}
	e.logs = append(e.logs, p)
}

// startHost starts (or restarts) volplugin for host name, mounting under
// root ("" keeps the host's previous root).
func (e *faultEnv) startHost(name, root string, extra ...string) *faultHost {
	e.t.Helper()
	return e.startHostAt(name, root, "", extra...)
}

// startHostAt is startHost stopping at faultpoint step ("": none).
func (e *faultEnv) startHostAt(name, root, step string, extra ...string) *faultHost {
	e.t.Helper()
	h := e.hosts[name]
	if h == nil {
		h = &faultHost{name: name, sockDir: filepath.Join(e.data, "plugins-"+name)}
		e.hosts[name] = h
	}
	if root != "" {
		h.root = root
	}
	if h.root == "" {
		h.root = filepath.Join(e.data, "mnt-"+name)
	}
	if extra != nil {
		h.extra = extra
	}
	args := append([]string{"--volmaster", e.volmasterURLForPlugin, "--plugin-name", e.plugin, "--host-label", name,
		"--local-data-dir", filepath.Join(e.data, "local"), "--mount-root", h.root,
		"--state-dir", filepath.Join(e.data, "state-"+name), "--socket-dir", h.sockDir,
		"--metrics-listen", ""}, h.extra...)
	h.p = startProcEnv(e.t, nil, faultEnvVar(step), "volplugin", args, "volplugin socket")
	e.logs = append(e.logs, h.p)
	return h
}

func (h *faultHost) client() *http.Client {
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.p.lines["volplugin socket"])
	}}}
}

// call sends one Docker plugin request and returns the answer and its Err.
func (h *faultHost) call(t *testing.T, method string, body any) (map[string]any, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := h.client().Post("http://plugin/VolumeDriver."+method, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	e, _ := out["Err"].(string)
	return out, e
}

func (h *faultHost) mount(t *testing.T, vol, id string) (string, string) {
	t.Helper()
	out, e := h.call(t, "Mount", map[string]string{"Name": vol, "ID": id})
	mp, _ := out["Mountpoint"].(string)
	return mp, e
}

func (h *faultHost) unmount(t *testing.T, vol, id string) string {
	t.Helper()
	_, e := h.call(t, "Unmount", map[string]string{"Name": vol, "ID": id})
	return e
}

func (h *faultHost) info(t *testing.T) map[string]any {
	return pluginInfo(t, h.p.lines["volplugin socket"])
}

// lostLocks counts "LOCK LOST" reports in every volplugin log of the row.
func (e *faultEnv) lostLocks() int {
	n := 0
	for _, p := range e.logs {
		n += strings.Count(p.logs(), "LOCK LOST")
	}
	return n
}

func (e *faultEnv) image(vol string) string {
	ref, _ := config.ParseVolumeRef(vol)
	return filepath.Join(e.data, "local", "images", ref.Policy, ref.Name+".img")
}

// mountsOfImage lists the mount points of vol's loop devices.
func (e *faultEnv) mountsOfImage(vol string) []string {
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME", "--associated", e.image(vol)).Output()
	devs := strings.Fields(string(out))
	if len(devs) == 0 {
		return nil
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mps []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		i := indexOf(f, "-")
		if i < 0 || i+2 >= len(f) {
			continue
		}
		for _, d := range devs {
			if f[i+2] == d {
				mps = append(mps, f[4])
			}
		}
	}
	return mps
}

func indexOf(f []string, s string) int {
	for i, x := range f {
		if x == s {
			return i
		}
	}
	return -1
}

// hostsMounting counts the hosts whose mount root holds a mount of vol.
func (e *faultEnv) hostsMounting(vol string) int {
	n := 0
	mps := e.mountsOfImage(vol)
	for _, h := range e.hosts {
		for _, mp := range mps {
			if strings.HasPrefix(mp, h.root+"/") || strings.HasPrefix(mp, filepath.Join(e.data, "oldroot-"+h.name)+"/") {
				n++
				break
			}
		}
	}
	return n
}

// holder returns the host holding vol's mount lock ("" if none).
func (e *faultEnv) holder(vol string) string {
	out, _, code := volcli(e.t, e.vm.URL, "", "--json", "use", "get", vol)
	if code != 0 {
		return ""
	}
	var u config.Use
	_ = json.Unmarshal([]byte(out), &u)
	return u.Hostname
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// writer appends to a file in a mounted volume every 20 ms with fsync,
// counting failures, until stopped.
type writer struct {
	failed atomic.Int64
	writes atomic.Int64
	stop   chan struct{}
	done   chan struct{}
}

func startWriter(path string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err == nil {
				_, err = f.WriteString("x")
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if err != nil {
				w.failed.Add(1)
			} else {
				w.writes.Add(1)
			}
		}
	}()
	return w
}

func (w *writer) halt() (writes, failed int64) {
	close(w.stop)
	<-w.done
	return w.writes.Load(), w.failed.Load()
}

// finish unmounts what the row left mounted through the plugins, then
// counts leftovers: locks, loop devices, mounts, images of removed volumes;
// and checks the marker written at the first mount (a reformat loses it).
func (e *faultEnv) finish(c *faultCounts, vols map[string][]string) {
	t := e.t
	t.Helper()
	for vol, ids := range vols {
		for _, h := range e.hosts {
			for _, id := range ids {
				if h.p != nil && !h.p.stopped {
					h.unmount(t, vol, id)
				}
			}
		}
	}
	for vol := range vols {
		waitForQuiet(t, 15*time.Second, func() bool { return e.holder(vol) == "" })
		if e.holder(vol) != "" {
			c.LeakedLocks++
		}
		if len(e.mountsOfImage(vol)) > 0 {
			c.LeakedMounts++
		}
		waitForQuiet(t, 10*time.Second, func() bool { return loops(t, e.image(vol)) == "" })
		if loops(t, e.image(vol)) != "" {
			c.LeakedLoops++
		}
		// Mount once more and read the marker: a reformat would have lost it.
		h := e.anyHost()
		if h == nil {
			continue
		}
		mp, errMsg := h.mount(t, vol, "final-check")
		if errMsg != "" {
			t.Errorf("final mount of %s: %s", vol, errMsg)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(mp, "marker")); err != nil || string(b) != vol {
			c.Reformats++
		}
		h.unmount(t, vol, "final-check")
	}
}

func (e *faultEnv) anyHost() *faultHost {
	for _, h := range e.hosts {
		if h.p != nil && !h.p.stopped {
			return h
		}
	}
	return nil
}

// waitForQuiet is waitFor that does not fail: the caller counts.
func waitForQuiet(t *testing.T, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// cleanupLeftovers unmounts and detaches whatever a failed row left.
func (e *faultEnv) cleanupLeftovers() {
	mps := mountsUnder(e.data)
	for i := len(mps) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", mps[i]).Run()
	}
	imgs, _ := filepath.Glob(filepath.Join(e.data, "local", "images", "*", "*.img"))
	for _, img := range imgs {
		out, _ := exec.Command("losetup", "-j", img).Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok {
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
}

// createVolume creates vol and writes its marker through a first mount on h.
func (e *faultEnv) createVolume(h *faultHost, vol string) {
	e.t.Helper()
	if _, errOut, code := volcli(e.t, e.vm.URL, "", "volume", "create", vol); code != 0 {
		e.t.Fatalf("volume create %s: %s", vol, errOut)
	}
	e.writeMarker(h, vol)
}

// writeMarker writes vol's marker through a mount on h (finish reads it).
func (e *faultEnv) writeMarker(h *faultHost, vol string) {
	e.t.Helper()
	mp, errMsg := h.mount(e.t, vol, "setup")
	if errMsg != "" {
		e.t.Fatalf("first mount of %s: %s", vol, errMsg)
	}
	if err := os.WriteFile(filepath.Join(mp, "marker"), []byte(vol), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if errMsg := h.unmount(e.t, vol, "setup"); errMsg != "" {
		e.t.Fatalf("unmount %s: %s", vol, errMsg)
	}
}

// mountWriting mounts vol on h for mount ID id and starts a writer in it.
func (e *faultEnv) mountWriting(h *faultHost, vol, id string) (string, *writer) {
	e.t.Helper()
	mp, errMsg := h.mount(e.t, vol, id)
	if errMsg != "" {
		e.t.Fatalf("mount %s on %s: %s", vol, h.name, errMsg)
	}
	return mp, startWriter(filepath.Join(mp, "log"))
}

// etcdClient dials the volmaster's embedded etcd, for faults only etcd can
// inject (an operation lock held as long as the test wants).
func (e *faultEnv) etcdClient() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.vm.EtcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}
