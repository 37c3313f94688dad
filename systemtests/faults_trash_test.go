package systemtests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// docker volume rm of an unmounted volume, as Docker sends it through the
// plugin socket (Get, then Remove): the volume goes to the trash, and volcli
// volume trash restore brings it back with its data (the marker written at
// the first mount, read back by finish's final mount: a lost or reformatted
// volume counts as a reformat). A trash entry or trashed file left after
// the restore counts as a leaked image.
func faultRemoveThenRestore(t *testing.T) {
	e := newFaultEnv(t, "vpf-trash", 3)
	a := e.startHost("hostA", "")
	const vol = "policy1/tr"
	e.createVolume(a, vol)
	var c faultCounts
	if _, errMsg := a.call(t, "Get", map[string]string{"Name": vol}); errMsg != "" {
		t.Fatalf("Get: %s", errMsg)
	}
	if _, errMsg := a.call(t, "Remove", map[string]string{"Name": vol}); errMsg != "" {
		t.Fatalf("Remove: %s", errMsg)
	}
	if _, err := os.Stat(e.image(vol)); !os.IsNotExist(err) {
		t.Errorf("image under its name after the remove: %v", err)
	}
	if n := len(e.trashEntries(vol)); n != 1 || len(e.trashFiles()) != 1 {
		t.Fatalf("after the remove: %d trash entries, files %v; want 1 and the image", n, e.trashFiles())
	}
	if _, errOut, code := volcli(t, e.vm.URL, "", "volume", "trash", "restore", vol); code != 0 {
		t.Fatalf("trash restore: %s", errOut)
	}
	if len(e.trashEntries(vol)) != 0 || len(e.trashFiles()) != 0 {
		c.LeakedImages++
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "docker volume rm of an unmounted volume", Step: "restore from the trash", Counts: c,
		Note: "through the plugin socket as Docker calls it (Get, Remove); TestDockerVolumeRmRestore does it with dockerd"})
}

// docker volume rm of a protected volume through the plugin socket is
// refused, naming the volcli command that removes it; nothing is removed
// (a removal counts as UsedRemoved).
func faultRemoveProtected(t *testing.T) {
	e := newFaultEnv(t, "vpf-prot", 3)
	a := e.startHost("hostA", "")
	const vol = "policy1/pr"
	if _, errOut, code := volcli(t, e.vm.URL, "", "volume", "create", vol, "--opt", "protect=true"); code != 0 {
		t.Fatalf("volume create: %s", errOut)
	}
	// createVolume's first mount and marker, on the existing volume.
	mp, errMsg := a.mount(t, vol, "setup")
	if errMsg != "" {
		t.Fatal(errMsg)
	}
	if err := os.WriteFile(filepath.Join(mp, "marker"), []byte(vol), 0o644); err != nil {
		t.Fatal(err)
	}
	if errMsg := a.unmount(t, vol, "setup"); errMsg != "" {
		t.Fatal(errMsg)
	}
	var c faultCounts
	_, errMsg = a.call(t, "Remove", map[string]string{"Name": vol})
	if !strings.Contains(errMsg, "volcli volume remove --unprotect "+vol) {
		t.Errorf("Remove of a protected volume answered %q, want the volcli command", errMsg)
	}
	if _, err := os.Stat(e.image(vol)); err != nil || len(e.trashEntries(vol)) != 0 {
		c.UsedRemoved++
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "docker volume rm of a protected volume", Step: "Remove refused", Counts: c,
		Note: "refusal names volcli volume remove --unprotect"})
}
