package systemtests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// docker runs a docker command against d and fails the test on error.
func docker(t *testing.T, d *dockertest.Daemon, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := d.Docker(ctx, args...)
	if err != nil {
		t.Fatalf("docker %v: %v\n%s%s", args, err, out, errOut)
	}
	return out
}

// The plugin as Docker users touch it, with a real dockerd: create with an
// option, write in one container, read in another, two containers at once,
// ls/inspect, rm removes the image too.
func TestDockerVolumeLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, loop devices and mounts")
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"32MB"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-life"
	vp := startVolplugin(t, vm, data, plugin, "hostA")
	d := dockertest.Start(t, "vp-life")
	img := d.Image(t)

	docker(t, d, "volume", "create", "-d", plugin, "policy1/db", "-o", "size=64MB")
	var v struct {
		Create struct{ Size string } `json:"create"`
	}
	out, _, _ := volcli(t, vm.URL, "", "volume", "get", "policy1/db")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Create.Size != "64MB" {
		t.Fatalf("volume created with size %q (%v), want 64MB", v.Create.Size, err)
	}
	docker(t, d, "run", "--rm", "-v", "policy1/db:/data", img, "sh", "-c", "echo hello > /data/f && sync")
	if got := docker(t, d, "run", "--rm", "-v", "policy1/db:/data", img, "cat", "/data/f"); got != "hello\n" {
		t.Fatalf("second container read %q", got)
	}
	if ls := docker(t, d, "volume", "ls", "--format", "{{.Driver}} {{.Name}}"); !strings.Contains(ls, plugin+" policy1/db") {
		t.Errorf("docker volume ls:\n%s", ls)
	}
	insp := docker(t, d, "volume", "inspect", "policy1/db")
	for _, want := range []string{`"policy": "policy1"`, `"size": "64MB"`, `"backend": "local"`} {
		if !strings.Contains(insp, want) {
			t.Errorf("docker volume inspect lacks %s:\n%s", want, insp)
		}
	}

	// Two containers at once share the mount; one lock with two mount IDs.
	docker(t, d, "run", "-d", "--name", "holder", "-v", "policy1/db:/data", img, "sleep", "300")
	if got := docker(t, d, "run", "--rm", "-v", "policy1/db:/data", img, "sh", "-c", "echo two >> /data/f; cat /data/f"); got != "hello\ntwo\n" {
		t.Fatalf("second concurrent container read %q", got)
	}
	out, _, _ = volcli(t, vm.URL, "", "--json", "use", "get", "policy1/db")
	if !strings.Contains(out, `"hostname": "hostA"`) {
		t.Errorf("use while a container runs: %s", out)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "remove", "policy1/db"); code != 4 || !strings.Contains(e, "hostA") {
		t.Errorf("remove while mounted: exit %d %s", code, e)
	}
	docker(t, d, "rm", "-f", "holder")
	if _, _, code := volcli(t, vm.URL, "", "use", "get", "policy1/db"); code != 3 {
		t.Errorf("lock still there after the last container went (exit %d)", code)
	}
	docker(t, d, "volume", "rm", "policy1/db")
	if _, err := os.Stat(filepath.Join(data, "local", "images", "policy1", "db.img")); !os.IsNotExist(err) {
		t.Errorf("image after docker volume rm: %v", err)
	}
	if _, _, code := volcli(t, vm.URL, "", "volume", "get", "policy1/db"); code != 3 {
		t.Errorf("record after docker volume rm (exit %d)", code)
	}
	_ = vp
}

// waitFile waits until path's content contains want.
func waitFile(t *testing.T, path, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q within %s", path, b, want, d)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// A write limit in the volume's runtime options throttles the container's
// direct writes, and a runtime upload changes it live.
func TestDockerRateLimitLive(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, cgroups, loop devices and mounts")
	}
	if _, err := os.Stat("/sys/fs/cgroup/blkio"); err != nil {
		dockertest.SkipOrFail(t, "no cgroup v1 blkio hierarchy: %v", err)
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	policy := `{"backend":"local","create":{"size":"128MB"},"runtime":{"rate-limit":{"write-bps":"10MB"}}}`
	if _, e, code := volcli(t, vm.URL, policy, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-rate"
	startVolplugin(t, vm, data, plugin, "hostA")
	d := dockertest.Start(t, "vp-rate")
	img := d.Image(t)
	docker(t, d, "volume", "create", "-d", plugin, "policy1/db")
	id := strings.TrimSpace(docker(t, d, "run", "-d", "--name", "writer", "-v", "policy1/db:/data", img, "sleep", "300"))
	t.Cleanup(func() { _, _, _ = d.Docker(context.Background(), "rm", "-f", "writer") })
	throttle := filepath.Join("/sys/fs/cgroup/blkio/docker", id, "blkio.throttle.write_bps_device")
	waitFile(t, throttle, " 10485760", 15*time.Second)

	rate := func() float64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, errOut, err := d.Docker(ctx, "exec", "writer", "/usr/bin/gnudd", "if=/dev/zero", "of=/data/f", "bs=1M", "count=50", "oflag=direct")
		if err != nil {
			t.Fatalf("dd: %v %s", err, errOut)
		}
		r, err := dockertest.DDRate(errOut)
		if err != nil {
			t.Fatalf("dd rate from %q: %v", errOut, err)
		}
		return r / (1 << 20)
	}
	if r := rate(); r < 8 || r > 12 {
		t.Errorf("50 MiB direct write at a 10 MiB/s limit ran at %.1f MiB/s", r)
	} else {
		t.Logf("10 MiB/s limit: measured %.2f MiB/s", r)
	}
	if _, e, code := volcli(t, vm.URL, `{"rate-limit":{"write-bps":"20MB"}}`, "volume", "runtime", "upload", "policy1/db"); code != 0 {
		t.Fatalf("runtime upload: %s", e)
	}
	waitFile(t, throttle, " 20971520", 15*time.Second)
	if r := rate(); r < 16 || r > 24 {
		t.Errorf("after the runtime upload to 20 MiB/s the write ran at %.1f MiB/s", r)
	} else {
		t.Logf("20 MiB/s limit: measured %.2f MiB/s", r)
	}
	docker(t, d, "rm", "-f", "writer")
	docker(t, d, "volume", "rm", "policy1/db")
}
