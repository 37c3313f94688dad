package systemtests

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// The errors a Docker user meets, seen through a real dockerd, and the
// troubleshooting page names each as the user sees it: a run -v of a
// volume Docker cannot find, and each Docker path while volmaster is down.
// A create -o of an existing volume changes nothing (as the README says).
func TestDockerMessagesDocumented(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, loop devices and mounts")
	}
	guide, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := func(what, msg string) {
		t.Helper()
		if !strings.Contains(string(guide), msg) {
			t.Errorf("docs/troubleshooting.md does not show %s as users see it: %q", what, msg)
		}
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"32MB"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-msg"
	startVolplugin(t, vm, data, plugin, "hostA")
	d := dockertest.Start(t, "vp-msg")
	img := d.Image(t)
	docker(t, d, "volume", "create", "-d", plugin, "policy1/db")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, _ = d.Docker(ctx, "volume", "rm", "policy1/db")
		_, _, _ = d.Docker(ctx, "volume", "rm", "policy1/new")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fails := func(want string, args ...string) {
		t.Helper()
		_, e, err := d.Docker(ctx, args...)
		if err == nil || !strings.Contains(e, want) {
			t.Errorf("docker %s: %v %q, want an error with %q", strings.Join(args, " "), err, e, want)
		}
	}
	const local = "includes invalid characters for a local volume name"
	documented("Docker's local-driver refusal", local)
	fails(local, "run", "--rm", "-v", "policy1/none:/data", img, "true")

	docker(t, d, "volume", "create", "-d", plugin, "policy1/db", "-o", "size=128MB")
	if insp := docker(t, d, "volume", "inspect", "policy1/db"); !strings.Contains(insp, `"size": "32MB"`) {
		t.Errorf("create -o size=128MB of an existing volume changed it:\n%s", insp)
	}

	if err := vm.stop(); err != nil {
		t.Fatal(err)
	}
	// Docker asks the plugin whether a volume exists before it mounts or
	// creates it, and forgets a volume the plugin denies: so without
	// volmaster volplugin says every volume exists, and the Mount fails.
	const mountDown = "VolumeDriver.Mount: volmaster at "
	documented("a mount while volmaster is down", mountDown)
	fails(mountDown, "run", "--rm", "-v", "policy1/db:/data", img, "true")
	fails(mountDown, "run", "--rm", "--volume-driver", plugin, "-v", "policy1/none:/data", img, "true")
	fails(mountDown, "run", "--rm", "-v", "policy1/none:/data", img, "true")
	if ls := docker(t, d, "volume", "ls", "-q"); !strings.Contains(ls, "policy1/db") {
		t.Errorf("Docker forgot policy1/db while volmaster was down:\n%s", ls)
	}
	// The price, documented: a create then seems to work.
	docker(t, d, "volume", "create", "-d", plugin, "policy1/new")
	documented("a create while volmaster is down", "`docker volume create` while volmaster is down")
	documented("a second volplugin", "another volplugin is running")
}
