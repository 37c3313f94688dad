package systemtests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// trashEntries lists the trash entries of vol through volcli.
func (e *faultEnv) trashEntries(vol string) []config.TrashEntry {
	e.t.Helper()
	out, errOut, code := volcli(e.t, e.vm.URL, "", "--json", "volume", "trash", "list", vol)
	if code != 0 {
		e.t.Fatalf("trash list %s: %s", vol, errOut)
	}
	var entries []config.TrashEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		e.t.Fatalf("trash list %s: %v: %s", vol, err, out)
	}
	return entries
}

// trashFiles lists the files the local backend keeps in its trash.
func (e *faultEnv) trashFiles() []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(e.data, "local", "trash"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// docker volume rm of an unmounted volume, with a real dockerd talking to
// the volplugin process: the volume goes to the trash, and volcli volume
// trash restore brings it back with its data: a new container reads the
// file written before, and finish's final mount reads the marker (a lost
// or reformatted volume counts as a reformat). A trash entry or trashed
// file left after the restore counts as a leaked image.
func faultRemoveThenRestore(t *testing.T) {
	e := newFaultEnv(t, "vpf-trash", 3)
	a := e.startHost("hostA", "")
	d, img := e.startDocker(a, "vpf-trash")
	const vol = "policy1/tr"
	docker(t, d, "volume", "create", "-d", e.plugin, vol)
	docker(t, d, "run", "--rm", "-v", vol+":/data", img, "sh", "-c", "printf %s "+vol+" > /data/marker && echo precious > /data/f && sync")
	var c faultCounts
	docker(t, d, "volume", "rm", vol)
	if _, err := os.Stat(e.image(vol)); !os.IsNotExist(err) {
		t.Errorf("image under its name after docker volume rm: %v", err)
	}
	if n := len(e.trashEntries(vol)); n != 1 || len(e.trashFiles()) != 1 {
		t.Fatalf("after docker volume rm: %d trash entries, files %v; want 1 and the image", n, e.trashFiles())
	}
	if _, errOut, code := volcli(t, e.vm.URL, "", "volume", "trash", "restore", vol); code != 0 {
		t.Fatalf("trash restore: %s", errOut)
	}
	if len(e.trashEntries(vol)) != 0 || len(e.trashFiles()) != 0 {
		c.LeakedImages++
	}
	if got := docker(t, d, "run", "--rm", "-v", vol+":/data", img, "cat", "/data/f"); got != "precious\n" {
		c.Reformats++
		t.Errorf("after the restore a container read %q", got)
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "docker volume rm of an unmounted volume", Step: "restore from the trash", Counts: c,
		Note: "real dockerd: docker volume rm, volcli volume trash restore, docker run reads the file"})
}

// docker volume rm of a protected volume, with a real dockerd: refused,
// naming the volcli command that removes it; nothing is removed (a removal
// counts as UsedRemoved).
func faultRemoveProtected(t *testing.T) {
	e := newFaultEnv(t, "vpf-prot", 3)
	a := e.startHost("hostA", "")
	d, img := e.startDocker(a, "vpf-prot")
	const vol = "policy1/pr"
	docker(t, d, "volume", "create", "-d", e.plugin, vol, "-o", "protect=true")
	docker(t, d, "run", "--rm", "-v", vol+":/data", img, "sh", "-c", "printf %s "+vol+" > /data/marker && sync")
	var c faultCounts
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, errOut, err := d.Docker(ctx, "volume", "rm", vol)
	if err == nil || !strings.Contains(errOut, "volcli volume remove --unprotect "+vol) {
		t.Errorf("docker volume rm of a protected volume: %v %q, want a refusal naming volcli volume remove --unprotect", err, errOut)
	}
	if _, err := os.Stat(e.image(vol)); err != nil || len(e.trashEntries(vol)) != 0 {
		c.UsedRemoved++
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "docker volume rm of a protected volume", Step: "refused", Counts: c,
		Note: "real dockerd; the refusal names volcli volume remove --unprotect"})
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
	purgeTrash(tb, url, ref)
	return "", 0
}

// purgeTrash purges every trash entry of volume ref.
func purgeTrash(tb testing.TB, url, ref string) {
	tb.Helper()
	out, e, lcode := volcli(tb, url, "", "--json", "volume", "trash", "list", ref)
	var entries []struct {
		ID string `json:"id"`
	}
	if lcode != 0 || json.Unmarshal([]byte(out), &entries) != nil {
		tb.Errorf("trash list %s: exit %d %s %s", ref, lcode, out, e)
		return
	}
	for _, en := range entries {
		if _, e, pcode := volcli(tb, url, "", "volume", "trash", "purge", ref, en.ID); pcode != 0 {
			tb.Errorf("trash purge %s %s: %s", ref, en.ID, e)
		}
	}
}
