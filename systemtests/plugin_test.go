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
	createPlugin(t, d, plugin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
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

// createPlugin runs scripts/plugin create name against d with the volplugin
// binary built for this run.
func createPlugin(t *testing.T, d *dockertest.Daemon, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	create := exec.CommandContext(ctx, "../scripts/plugin", "create", name, filepath.Join(binDir, "volplugin"))
	create.Env = d.Env()
	start := time.Now()
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("scripts/plugin create: %v\n%s", err, out)
	}
	t.Logf("scripts/plugin create took %s", time.Since(start).Round(time.Second))
}

// The managed plugin on Ceph: rbd-fuse and the loop device run inside the
// plugin, which reads ceph.conf and its keyring from the host's /etc/ceph
// (here a directory standing in for the host's /etc, given as etc.source).
// The daemon shares the host's network so the plugin reaches the monitors.
func TestManagedPluginCeph(t *testing.T) {
	conf := cephConf(t)
	if _, err := os.Stat("/sys/class/net/docker0"); err == nil {
		dockertest.SkipOrFail(t, "this host has a docker0 bridge: a host-network test dockerd would delete it")
	}
	etc := t.TempDir()
	pluginCephConf(t, conf, filepath.Join(etc, "ceph"))
	data := t.TempDir()
	vm := startVolmaster(t, data, "--ceph-conf", conf)
	if _, e, code := volcli(t, vm.URL, `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"64MB"}}`, "policy", "upload", "cephmp"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	d := dockertest.Start(t, "vp-managed-ceph", dockertest.WithPluginsDir(t.TempDir()), dockertest.WithHostNetwork())
	img := d.Image(t)
	const plugin = "vpsys-managed-ceph:latest"
	createPlugin(t, d, plugin)
	docker(t, d, "plugin", "set", plugin, "VOLMASTER="+vm.URL, "VOLPLUGIN_HOST_LABEL=hostC",
		"VOLPLUGIN_METRICS_LISTEN=", "VOLPLUGIN_CEPH_CONF=/etc/ceph/ceph.conf", "VOLPLUGIN_CEPH_MAPPER=fuse",
		"etc.source="+etc, "data.source="+data)
	docker(t, d, "plugin", "enable", "--timeout", "60", plugin)

	docker(t, d, "volume", "create", "-d", plugin, "cephmp/x")
	t.Cleanup(func() { _, _ = removeForGood(t, vm.URL, "cephmp/x") })
	if imgs := rbdImages(t, conf); !strings.Contains(imgs, "cephmp:x") {
		t.Fatalf("rbd ls after docker volume create: %q", imgs)
	}
	docker(t, d, "run", "--rm", "-v", "cephmp/x:/data", img, "sh", "-c", "echo hello > /data/f && sync")
	if got := docker(t, d, "run", "--rm", "-v", "cephmp/x:/data", img, "cat", "/data/f"); got != "hello\n" {
		t.Fatalf("second container read %q", got)
	}
	docker(t, d, "plugin", "disable", "-f", plugin)
	docker(t, d, "plugin", "rm", "-f", plugin)

	// The data is in the cluster: export the image and read the file.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	export := filepath.Join(t.TempDir(), "x.img")
	if out, err := execOut(ctx, "rbd", "-c", conf, "export", "rbd/cephmp:x", export); err != nil {
		t.Fatalf("rbd export: %v\n%s", err, out)
	}
	if out, err := execOut(ctx, "debugfs", "-R", "cat /f", export); err != nil || !strings.Contains(out, "hello\n") {
		t.Fatalf("debugfs cat /f of the exported image: %v\n%s", err, out)
	}
	if e, code := removeForGood(t, vm.URL, "cephmp/x"); code != 0 {
		t.Errorf("volume remove after the plugin went: %s", e)
	}
	if imgs := rbdImages(t, conf); strings.Contains(imgs, "cephmp:") {
		t.Errorf("images left: %q", imgs)
	}
}

// pluginCephConf writes dir/ceph.conf and dir/keyring for a client that sees
// them as /etc/ceph: the cluster-wide settings of conf's [global] section and
// the client keyring conf names, at its new path.
func pluginCephConf(t *testing.T, conf, dir string) {
	t.Helper()
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{"fsid": true, "mon_host": true, "auth_cluster_required": true, "auth_service_required": true,
		"auth_client_required": true, "client_mount_timeout": true, "rados_mon_op_timeout": true, "rados_osd_op_timeout": true}
	out := []string{"[global]"}
	section, keyring := "", ""
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
		case section == "[global]" && keep[k]:
			out = append(out, k+" = "+v)
		case section == "[client]" && k == "keyring":
			keyring = v
		}
	}
	if keyring == "" {
		t.Fatalf("%s names no [client] keyring", conf)
	}
	key, err := os.ReadFile(keyring)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, "keyring = /etc/ceph/keyring")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ceph.conf"), []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keyring"), key, 0o600); err != nil {
		t.Fatal(err)
	}
}
