package volcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage/backend/ceph"
	"github.com/volplugin/volplugin/volplugin"
)

// startVolplugin runs a real volplugin against the harness's volmaster,
// with its socket in a directory of its own; it stops with the test.
func (h *harness) startVolplugin(name string) (sockDir string) {
	h.t.Helper()
	sockDir, root := h.t.TempDir(), h.t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	started, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- volplugin.Serve(ctx, volplugin.Options{
			Volmaster: h.url, PluginName: name, SocketDir: sockDir, Host: "doctor-host", MountRoot: filepath.Join(root, "mnt"),
			StateDir: filepath.Join(root, "state"), LocalDataDir: filepath.Join(root, "data"), Log: log,
			Started: func(s string) { started <- s },
		})
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-started:
	case err := <-done:
		h.t.Fatalf("volplugin did not start: %v", err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("volplugin did not start in 30s")
	}
	return sockDir
}

// toolDir returns a directory holding links to the named tools as found
// on $PATH: a PATH for doctor --path that lacks everything else.
func toolDir(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// doctorRun runs volcli doctor --host --json and returns its checks by
// "check: detail" order and the exit code.
func (h *harness) doctorRun(url string, args ...string) ([]checkResult, int) {
	h.t.Helper()
	r := runVolcli("", append([]string{"--volmaster", url, "--json", "doctor", "--host", "--check-timeout", "10s"}, args...)...)
	var res []checkResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		h.t.Fatalf("doctor --json printed %q (stderr %q): %v", r.stdout, r.stderr, err)
	}
	failed := 0
	for _, c := range res {
		if c.Status == statusFail {
			failed++
		}
	}
	if (failed == 0) != (r.code == 0) || (failed > 0 && !strings.Contains(r.stderr, fmt.Sprintf("%d of %d checks failed", failed, len(res)))) {
		h.t.Errorf("doctor: %d failed checks, exit %d, stderr %q", failed, r.code, r.stderr)
	}
	return res, r.code
}

func find(res []checkResult, check, detail string) (checkResult, bool) {
	for _, c := range res {
		if c.Check == check && strings.Contains(c.Detail, detail) {
			return c, true
		}
	}
	return checkResult{}, false
}

// volcli doctor --host against a real volmaster and a real volplugin passes;
// breaking one thing at a time fails the check of that thing, with a fix,
// and the exit code, and changes no other check but those that needed it.
func TestDoctorBreaksOneThingAtATime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: loop devices cannot be opened, so doctor --host cannot pass here")
	}
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "plain")
	h.ok(`{"backend": "local", "create": {"size": "20MB", "filesystem": "xfs"}}`, "policy", "upload", "fast")
	sockDir := h.startVolplugin("doctortest")
	tools := toolDir(t, "mkfs.ext4", "mkfs.xfs")
	good := []string{"--plugin-dir", sockDir, "--plugin-name", "doctortest", "--path", tools}

	base, code := h.doctorRun(h.url, good...)
	status := map[string]string{}
	for _, c := range base {
		if c.Status == statusFail {
			t.Errorf("doctor with everything in place: FAIL %s: %s (fix: %s)", c.Check, c.Detail, c.Fix)
		}
		status[c.Check+" "+strings.Fields(c.Detail)[0]] = c.Status
	}
	if code != 0 {
		t.Fatalf("doctor with everything in place exits %d", code)
	}
	for _, want := range []struct{ check, detail string }{
		{"volmaster", h.url + " answers"}, {"etcd", "reads etcd"}, {"clock", "volmaster's"},
		{"plugin socket", "doctortest.sock answers"}, {"mkfs", "mkfs.ext4 at " + tools}, {"mkfs", "mkfs.xfs at " + tools},
	} {
		if c, ok := find(base, want.check, want.detail); !ok || c.Status != statusOK {
			t.Errorf("doctor has no OK %s check saying %q: %+v", want.check, want.detail, base)
		}
	}

	// A closed port: nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name    string
		url     string
		args    []string
		check   string // the check that must fail
		detail  string // in its detail
		fix     string // in its fix
		changes []string
	}{
		{name: "no plugin dir", url: h.url, args: []string{"--plugin-dir", filepath.Join(sockDir, "absent"), "--plugin-name", "doctortest", "--path", tools},
			check: "plugin directory", detail: "no such file or directory", fix: "start volplugin", changes: []string{"plugin socket"}},
		{name: "volplugin not running", url: h.url, args: []string{"--plugin-dir", sockDir, "--plugin-name", "other", "--path", tools},
			check: "plugin socket", detail: "other.sock does not exist", fix: "start volplugin"},
		{name: "volmaster down", url: down, args: good,
			check: "volmaster", detail: "cannot reach volmaster at " + down, fix: "start volmaster",
			changes: []string{"clock", "etcd", "volsupervisor", "mkfs", "ceph", "ceph mapper"}},
		{name: "no mkfs.xfs", url: h.url, args: []string{"--plugin-dir", sockDir, "--plugin-name", "doctortest", "--path", toolDir(t, "mkfs.ext4")},
			check: "mkfs", detail: "mkfs.xfs, needed by policy fast: mkfs.xfs: not found", fix: "apt-get install xfsprogs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, code := h.doctorRun(tc.url, tc.args...)
			if code != ExitError {
				t.Errorf("exit %d, want %d", code, ExitError)
			}
			c, ok := find(res, tc.check, tc.detail)
			if !ok || c.Status != statusFail || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("no FAIL %s check saying %q with a fix %q:\n%+v", tc.check, tc.detail, tc.fix, res)
			}
			for _, r := range res {
				if r == c || slices.Contains(tc.changes, r.Check) {
					continue
				}
				if was, ok := status[r.Check+" "+strings.Fields(r.Detail)[0]]; ok && was != r.Status {
					t.Errorf("%s changed from %s to %s: %s", r.Check, was, r.Status, r.Detail)
				}
				if r.Status == statusFail {
					t.Errorf("another check failed: %s: %s", r.Check, r.Detail)
				}
			}
		})
	}

	// A socket file nobody listens on (volplugin killed).
	stale := t.TempDir()
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(stale, "doctortest.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	res, _ := h.doctorRun(h.url, "--plugin-dir", stale, "--plugin-name", "doctortest", "--path", tools)
	if c, ok := find(res, "plugin socket", "nobody listens"); !ok || c.Status != statusFail {
		t.Errorf("stale socket: %+v", res)
	}
}

// Checks whose host parts a test cannot break for real are run against
// FAKE /proc and /dev trees and a FAKE tool directory.
func TestDoctorHostFakes(t *testing.T) {
	fake := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(fake, "proc/self"), 0o755))
	must(os.WriteFile(filepath.Join(fake, "proc/self/mountinfo"), []byte("27 1 254:0 / / rw - ext4 /dev/vda rw\n"), 0o644))
	must(os.MkdirAll(filepath.Join(fake, "dev"), 0o755))
	must(os.WriteFile(filepath.Join(fake, "dev/fuse"), nil, 0o644)) // a FAKE: a file, not a device
	limited := config.Policy{Name: "lim", Backends: config.Backends{CRUD: "local", Mount: "local"}, Create: config.CreateOptions{Size: "1GB", Filesystem: "ext4"},
		Runtime: config.RuntimeOptions{RateLimit: config.RateLimit{WriteBPS: 1 << 20}}}
	ceph := config.Policy{Name: "rbd", Backends: config.Backends{CRUD: "ceph", Mount: "ceph"}, Driver: config.Driver{Pool: "rbd"},
		Create: config.CreateOptions{Size: "1GB", Filesystem: "ext4"}}
	d := &doctor{o: doctorOptions{SysRoot: filepath.Join(fake, "sys"), DevRoot: filepath.Join(fake, "dev"), ProcRoot: filepath.Join(fake, "proc"),
		Path: t.TempDir(), CheckTimeout: 5 * time.Second, PluginDir: fake, PluginName: "none"},
		policies: []config.Policy{limited, ceph}}
	d.hostChecks()
	want := map[string]string{
		"ceph mapper":  "no mapper works here", // no tools on the FAKE path
		"loop devices": "no such file",         // local policy: needed
		"cgroups":      "rate limits cannot be applied",
		"mkfs":         "mkfs.ext4, needed by policies lim, rbd",
	}
	for check, detail := range want {
		if c, ok := find(d.results, check, detail); !ok || c.Status != statusFail || c.Fix == "" {
			t.Errorf("no FAIL %s saying %q with a fix: %+v", check, detail, d.results)
		}
	}
	// No mapper chosen: FUSE is not needed, a warning only.
	if c, ok := find(d.results, "FUSE", "not a character device"); !ok || c.Status != statusWarn {
		t.Errorf("FUSE: %+v", d.results)
	}
	// Without a policy setting limits, missing cgroup controllers are a
	// warning.
	d.results, d.policies = nil, []config.Policy{ceph}
	d.checkCgroups(d.needs())
	if c, ok := find(d.results, "cgroups", "no policy sets one"); !ok || c.Status != statusWarn {
		t.Errorf("cgroups without limits: %+v", d.results)
	}
}

// The clock check fails beyond --max-skew, allowing for the round trip.
func TestDoctorClock(t *testing.T) {
	d := &doctor{o: doctorOptions{MaxSkew: 2 * time.Second}}
	before := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	after := before.Add(200 * time.Millisecond)
	for _, tc := range []struct {
		theirs time.Time
		status string
		detail string
	}{
		{before.Add(100 * time.Millisecond), statusOK, "agrees with volmaster's (±100ms"},
		{before.Add(2 * time.Second), statusOK, "1.9s behind"},
		{before.Add(5 * time.Second), statusFail, "4.9s behind"},
		{before.Add(-10 * time.Second), statusFail, "10.1s ahead of"},
		{time.Time{}, statusWarn, "does not report its time"},
	} {
		d.results = nil
		d.checkClock(tc.theirs, before, after)
		if c := d.results[0]; c.Status != tc.status || !strings.Contains(c.Detail, tc.detail) {
			t.Errorf("volmaster at %v: %+v, want %s %q", tc.theirs, c, tc.status, tc.detail)
		}
	}
}

// The Ceph check against the real cluster of scripts/ceph-dev: reached with
// the conf's keyring and the default pool; a missing pool, a keyring that
// does not open and monitors that do not answer each fail it.
func TestDoctorCeph(t *testing.T) {
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		const why = "CEPH_CONF unset: make test starts the cluster with scripts/ceph-dev"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	// A ceph.conf whose only monitor address nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadMon := filepath.Join(t.TempDir(), "ceph.conf")
	if err := os.WriteFile(deadMon, []byte("[global]\nmon_host = "+ln.Addr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	pol := func(name, pool string, opts map[string]string) config.Policy {
		return config.Policy{Name: name, Backends: config.Backends{CRUD: "ceph", Mount: "ceph", Snapshot: "ceph"},
			Driver: config.Driver{Pool: pool, Options: opts}, Create: config.CreateOptions{Size: "1GB", Filesystem: "ext4"}}
	}
	for _, tc := range []struct {
		name   string
		pol    config.Policy
		status string
		detail string
	}{
		{"reached", pol("a", "rbd", nil), statusOK, "reached as client.admin (" + conf + "); pool rbd exists"},
		{"no pool", pol("b", "nosuchpool", nil), statusFail, "but pool nosuchpool does not exist"},
		{"bad keyring", pol("c", "rbd", map[string]string{"keyring": filepath.Join(t.TempDir(), "absent.keyring")}), statusFail, "as client.admin"},
		{"no monitor", pol("d", "rbd", map[string]string{"conf": deadMon}), statusFail, "as client.admin (" + deadMon + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &doctor{o: doctorOptions{CephConf: conf, Path: os.Getenv("PATH"), CheckTimeout: 3 * time.Second},
				policies: []config.Policy{tc.pol}}
			d.checkCeph(d.needs())
			if c, ok := find(d.results, "ceph", tc.detail); !ok || c.Status != tc.status {
				t.Errorf("want %s %q: %+v", tc.status, tc.detail, d.results)
			}
		})
	}
}

// doctor names the Ceph backend's driver options itself (that package
// needs cgo; volcli does not): they must stay the same.
func TestDoctorCephOptionNames(t *testing.T) {
	for got, want := range map[string]string{cephOptConf: ceph.OptConf, cephOptKeyring: ceph.OptKeyring, cephOptUser: ceph.OptUser} {
		if got != want {
			t.Errorf("doctor reads option %q, the Ceph backend %q", got, want)
		}
	}
}
