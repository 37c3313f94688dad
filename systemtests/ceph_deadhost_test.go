package systemtests

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Ceph volume whose host died with it mapped: that host's rbd-fuse keeps
// the image open and its exclusive lock. The remove is refused while the
// last mount has no recorded unmount; once an operator records it (use
// force-remove), the remove fences the dead host's client (the blocklist
// grows) and the volume goes to the trash and is purged. Before, the lock
// left behind refused the remove for good.
func TestCephRemoveAfterHostDiedWithItMapped(t *testing.T) {
	conf := cephConf(t)
	data := t.TempDir()
	t.Cleanup(func() { cleanupCephHosts(t, data) })
	vm := startVolmaster(t, data, "--ceph-conf", conf)
	if _, e, code := volcli(t, vm.URL, `{"TTL": 3, "Timeout": 2}`, "global", "upload"); code != 0 {
		t.Fatalf("global: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"64MB"}}`, "policy", "upload", "cephdead"); code != 0 {
		t.Fatalf("policy: %s", e)
	}
	// A name of its own: the cluster may be shared with earlier runs.
	vol := fmt.Sprintf("cephdead/db%d", time.Now().UnixNano()%1000000)
	if _, e, code := volcli(t, vm.URL, "", "volume", "create", vol); code != 0 {
		t.Fatalf("create: %s", e)
	}
	t.Cleanup(func() { _, _ = removeForGood(t, vm.URL, vol) })
	vp := startVolplugin(t, vm, data, "vpsys-ceph-dead", "hostA", "--socket-dir", filepath.Join(data, "pa"),
		"--mount-root", filepath.Join(data, "mnt-a"), "--ceph-conf", conf, "--ceph-mapper", "fuse", "--ceph-run-dir", filepath.Join(data, "run-a"))
	pc := newPluginClient(vp.lines["volplugin socket"])
	if p, _ := pc.call(t, "Mount", `{"Name":"`+vol+`","ID":"m1"}`)["Mountpoint"].(string); p == "" {
		t.Fatalf("mount on host A\n%s", vp.logs())
	}
	_ = vp.signal(syscall.SIGKILL) // the host dies; its rbd-fuse (the mapping) stays

	// Its lock goes with its lease; the volume stays in use until proven
	// unmounted.
	waitFor(t, 30*time.Second, "the remove to ask for the unmount to be recorded", func() bool {
		_, e, code := volcli(t, vm.URL, "", "volume", "remove", vol)
		if code == 0 {
			t.Fatal("removed while its host's last mount has no recorded unmount")
		}
		return strings.Contains(e, "force-remove")
	})
	if _, e, code := volcli(t, vm.URL, "", "use", "force-remove", vol); code != 0 {
		t.Fatalf("use force-remove: %s", e)
	}
	before := blocklisted(t, conf)
	if e, code := removeForGood(t, vm.URL, vol); code != 0 {
		t.Fatalf("remove after the unmount was recorded: %s", e)
	}
	if newlyBlocklisted(t, conf, before) == 0 {
		t.Error("no new blocklist entry after the remove: the dead host's client was not fenced")
	}
	if imgs := rbdImages(t, conf); strings.Contains(imgs, strings.Replace(vol, "/", ":", 1)) {
		t.Errorf("image left: %q", imgs)
	}
}
