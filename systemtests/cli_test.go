package systemtests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README walkthrough, run through the real binaries: volmaster with its
// embedded etcd and the local backend, volcli as a user types it.
func TestWalkthroughWithBinaries(t *testing.T) {
	data := t.TempDir()
	vm := startVolmaster(t, data)
	if !strings.HasPrefix(vm.EtcdURL, "http://127.0.0.1:") {
		t.Errorf("etcd client URL printed as %q", vm.EtcdURL)
	}
	run := func(stdin string, want int, args ...string) string {
		t.Helper()
		out, errOut, code := volcli(t, vm.URL, stdin, args...)
		if code != want {
			t.Fatalf("volcli %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
		}
		return out + errOut
	}
	policy := "  \n" + `{"backend": "local", "create": {"size": "10MB"}, "runtime": {"snapshots": true, "snapshot": {"frequency": "30m", "keep": 20}}}` + "\n\n"
	run(policy, 0, "policy", "upload", "policy1")
	run("", 0, "volume", "create", "policy1/test")
	run(`{"backend": "local", "create": {"size": "20MB"}}`, 0, "policy", "upload", "policy1")
	run("", 0, "volume", "create", "policy1/test2", "--opt", "snapshots=false")
	if out := run("", 0, "volume", "list-all"); out != "policy1/test\npolicy1/test2\n" {
		t.Errorf("list-all printed %q", out)
	}
	var v struct {
		Create struct{ Size string } `json:"create"`
	}
	if err := json.Unmarshal([]byte(run("", 0, "volume", "get", "policy1/test")), &v); err != nil || v.Create.Size != "10MB" {
		t.Errorf("volume get policy1/test: %+v %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(data, "local", "images", "policy1", "test.img")); err != nil {
		t.Errorf("image of policy1/test: %v", err)
	}
	if out := run("", 3, "volume", "get", "policy1/nope"); !strings.Contains(out, "volume policy1/nope not found") {
		t.Errorf("missing volume printed %q", out)
	}
	run("", 4, "volume", "create", "policy1/test")
	run("", 2, "volume", "create", "policy1/bad name")
	run("", 2, "volume", "create", "policy1/x", "--opt", "size=0")
	run("", 0, "volume", "remove", "policy1/test2")
	if out := run("", 0, "info"); !strings.Contains(out, `"daemon": "volmaster"`) || !strings.Contains(out, `"volumes": 1`) {
		t.Errorf("volcli info printed %s", out)
	}
	if out := run("", 0, "volume", "reclaim", "--dry-run"); out != "" {
		t.Errorf("reclaim --dry-run with no reclaim policy printed %q", out)
	}
	run(`{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1ns"}}`, 0, "policy", "upload", "old")
	run("", 0, "volume", "create", "old/stale")
	if out := run("", 0, "volume", "reclaim", "--dry-run"); !strings.HasPrefix(out, "old/stale\tlast used ") {
		t.Errorf("reclaim --dry-run printed %q", out)
	}
	if out := run("", 0, "volume", "reclaim"); out != "removed old/stale (to the trash)\n" {
		t.Errorf("reclaim printed %q", out)
	}
	if _, err := os.Stat(filepath.Join(data, "local", "images", "policy1", "test2.img")); !os.IsNotExist(err) {
		t.Errorf("image of removed volume: %v", err)
	}

	// Everything survives a restart of volmaster on the same data dir.
	if err := vm.stop(); err != nil {
		t.Fatalf("volmaster exit after SIGTERM: %v\n%s", err, vm.logs())
	}
	vm2 := startVolmaster(t, data)
	if out := run2(t, vm2.URL, "volume", "list-all"); out != "policy1/test\n" {
		t.Errorf("list-all after restart printed %q", out)
	}
}

func run2(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, errOut, code := volcli(t, url, "", args...)
	if code != 0 {
		t.Fatalf("volcli %v: exit %d: %s", args, code, errOut)
	}
	return out
}
