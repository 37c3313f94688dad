package systemtests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// volplugin as a managed Docker plugin, the way a user installs it on a host
// where nothing but dockerd runs: scripts/plugin builds the rootfs from
// Debian packages plus the built binary and runs `docker plugin create`;
// the plugin is configured through its settable env and mounts, enabled,
// used by two containers, then disabled and removed. The data stays in the
// backend.
func TestManagedPlugin(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, docker plugin create, loop devices and mounts")
	}
	for _, tool := range []string{"nsenter", "debugfs", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			dockertest.SkipOrFail(t, "%s missing: %v", tool, err)
		}
	}
	data := t.TempDir()
	// A daemon of its own, seeing no unmanaged plugin sockets of other tests.
	d := dockertest.Start(t, "vp-managed", dockertest.WithPluginsDir(t.TempDir()))
	// The plugin runs in the daemon's network namespace (network type host),
	// so volmaster runs there too.
	ns := netns(d.PID)
	vm := startVolmasterVia(t, ns, data)
	vc := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		return volcliVia(t, ns, vm.URL, stdin, args...)
	}
	policy := `{"backend":"local","create":{"size":"32MB"},"runtime":{"rate-limit":{"write-bps":"10MB"}}}`
	if _, e, code := vc(policy, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	img := d.Image(t)

	const plugin = "vpsys-managed:latest"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	create := exec.CommandContext(ctx, "../scripts/plugin", "create", plugin, filepath.Join(binDir, "volplugin"))
	create.Env = d.Env()
	start := time.Now()
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("scripts/plugin create: %v\n%s", err, out)
	}
	t.Logf("scripts/plugin create took %s", time.Since(start).Round(time.Second))
	image := filepath.Join(data, "local", "images", "policy1", "x.img")
	t.Cleanup(func() {
		// A failed run may leave the plugin's loop device on the image.
		out, _ := execOut(context.Background(), "losetup", "--associated", image, "--noheadings", "--output", "NAME")
		for _, dev := range strings.Fields(out) {
			_, _ = execOut(context.Background(), "losetup", "--detach", dev)
		}
	})

	docker(t, d, "plugin", "set", plugin, "VOLMASTER="+vm.URL, "VOLPLUGIN_HOST_LABEL=hostM",
		"VOLPLUGIN_METRICS_LISTEN=", "data.source="+data)
	docker(t, d, "plugin", "enable", "--timeout", "60", plugin)
	if got := docker(t, d, "plugin", "inspect", "--format", "{{.Enabled}} {{.Config.Interface.Socket}} {{.Config.PropagatedMount}}", plugin); got != "true volplugin.sock /mnt/volplugin\n" {
		t.Fatalf("plugin inspect: %q", got)
	}

	docker(t, d, "volume", "create", "-d", plugin, "policy1/x")
	if _, e, code := vc("", "volume", "get", "policy1/x"); code != 0 {
		t.Fatalf("volume record after docker volume create: exit %d %s", code, e)
	}
	docker(t, d, "run", "--rm", "-v", "policy1/x:/data", img, "sh", "-c", "echo hello > /data/f && sync")
	// The mount lock is taken by the plugin under its host label while a
	// container holds the volume; the mount made inside the plugin is what
	// dockerd hands the container (propagated mount).
	id := strings.TrimSpace(docker(t, d, "run", "-d", "--name", "reader", "-v", "policy1/x:/data", img, "sleep", "300"))
	if out, _, _ := vc("", "--json", "use", "get", "policy1/x"); !strings.Contains(out, `"hostname": "hostM"`) {
		t.Errorf("mount lock while a container runs: %s", out)
	}
	if got := docker(t, d, "exec", "reader", "cat", "/data/f"); got != "hello\n" {
		t.Fatalf("second container read %q", got)
	}
	// The plugin sees the host's processes and cgroups (pidHost, /sys), so
	// the policy's rate limit reaches the container's own blkio cgroup.
	if _, err := os.Stat("/sys/fs/cgroup/blkio"); err == nil {
		waitFile(t, filepath.Join("/sys/fs/cgroup/blkio/docker", id, "blkio.throttle.write_bps_device"), " 10485760", 15*time.Second)
	} else {
		t.Logf("no cgroup v1 blkio hierarchy here, rate limit not checked: %v", err)
	}
	docker(t, d, "rm", "-f", "reader")
	if _, _, code := vc("", "use", "get", "policy1/x"); code != 3 {
		t.Errorf("mount lock still held after the last container went (exit %d)", code)
	}

	// Docker refuses to disable a plugin its volumes refer to without -f.
	docker(t, d, "plugin", "disable", "-f", plugin)
	docker(t, d, "plugin", "rm", "-f", plugin)
	if ls := docker(t, d, "plugin", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Fatalf("plugins left: %s", ls)
	}
	// The data outlives the plugin: the record is there and the image holds
	// the file, read straight from the filesystem image.
	if _, e, code := vc("", "volume", "get", "policy1/x"); code != 0 {
		t.Fatalf("volume record after plugin rm: exit %d %s", code, e)
	}
	out, err := execOut(ctx, "debugfs", "-R", "cat /f", image)
	if err != nil || !strings.Contains(out, "hello\n") {
		t.Fatalf("debugfs cat /f of %s: %v\n%s", image, err, out)
	}
	if out, _ := execOut(ctx, "losetup", "--associated", image, "--noheadings"); strings.TrimSpace(out) != "" {
		t.Errorf("loop device left on the image after the plugin went: %s", out)
	}
}
