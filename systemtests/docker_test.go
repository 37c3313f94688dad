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
