package systemtests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docker volume rm with a real dockerd moves the volume to the trash;
// volcli volume trash restore brings it back and a new container reads the
// file written before. A protected volume is refused by docker volume rm
// with the volcli command that removes it.
func TestDockerVolumeRmRestore(t *testing.T) {
	plugin := "vpsys-trash"
	vm, _, d, data := startDockerStack(t, plugin, "vp-trash")
	img := d.Image(t)

	docker(t, d, "volume", "create", "-d", plugin, "policy1/db")
	docker(t, d, "run", "--rm", "-v", "policy1/db:/data", img, "sh", "-c", "echo precious > /data/f && sync")
	docker(t, d, "volume", "rm", "policy1/db")
	if _, err := os.Stat(filepath.Join(data, "local", "images", "policy1", "db.img")); !os.IsNotExist(err) {
		t.Errorf("image under its name after docker volume rm: %v", err)
	}
	out, e, code := volcli(t, vm.URL, "", "volume", "trash", "list")
	if code != 0 || !strings.HasPrefix(out, "policy1/db\t") {
		t.Fatalf("trash list after docker volume rm: exit %d %q %s", code, out, e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "trash", "restore", "policy1/db"); code != 0 {
		t.Fatalf("trash restore: %s", e)
	}
	if got := docker(t, d, "run", "--rm", "-v", "policy1/db:/data", img, "cat", "/data/f"); got != "precious\n" {
		t.Fatalf("after the restore a container read %q", got)
	}

	docker(t, d, "volume", "create", "-d", plugin, "policy1/keep", "-o", "protect=true")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, errOut, err := d.Docker(ctx, "volume", "rm", "policy1/keep")
	if err == nil || !strings.Contains(errOut, "volcli volume remove --unprotect policy1/keep") {
		t.Fatalf("docker volume rm of a protected volume: %v %q, want a refusal naming volcli volume remove --unprotect", err, errOut)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "get", "policy1/keep"); code != 0 {
		t.Fatalf("protected volume gone after the refused rm: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "remove", "--unprotect", "policy1/keep"); code != 0 {
		t.Fatalf("volume remove --unprotect: %s", e)
	}
	docker(t, d, "volume", "rm", "policy1/db")
}

// removeForGood removes ref (to the trash) and purges its trash entries, so
// that a test on the shared Ceph cluster leaves nothing in the rbd trash. It
// returns the remove's stderr and exit code; purge failures fail the test.
func removeForGood(tb testing.TB, url, ref string) (string, int) {
	tb.Helper()
	_, e, code := volcli(tb, url, "", "volume", "remove", ref)
	if code != 0 {
		return e, code
	}
	out, e, lcode := volcli(tb, url, "", "--json", "volume", "trash", "list", ref)
	var entries []struct {
		ID string `json:"id"`
	}
	if lcode != 0 || json.Unmarshal([]byte(out), &entries) != nil {
		tb.Errorf("trash list %s: exit %d %s %s", ref, lcode, out, e)
		return "", 0
	}
	for _, en := range entries {
		if _, e, pcode := volcli(tb, url, "", "volume", "trash", "purge", ref, en.ID); pcode != 0 {
			tb.Errorf("trash purge %s %s: %s", ref, en.ID, e)
		}
	}
	return "", 0
}
