package loopdev

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
}

func image(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// losetup's own view, the reference the ioctls must agree with.
func losetupAssociated(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME", "--associated", path).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	return strings.Fields(string(out))
}

// Attach, Find and Detach agree with losetup: found by inode through a
// symlink and after a rename, not for another file, gone after Detach, and
// a second Detach is no error.
func TestAttachFindDetach(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	a, other := image(t, dir, "a.img"), image(t, dir, "other.img")
	dev, err := Attach(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(dev) })
	if got := losetupAssociated(t, a); !slices.Equal(got, []string{dev}) {
		t.Fatalf("losetup sees %v backed by %s, want [%s]", got, a, dev)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, filepath.Join(link, "a.img")} {
		if got, err := Find(p); err != nil || !slices.Equal(got, []string{dev}) {
			t.Errorf("Find(%s) = %v, %v; want [%s]", p, got, err, dev)
		}
	}
	if got, err := Find(other); err != nil || len(got) != 0 {
		t.Errorf("Find(other) = %v, %v; want none", got, err)
	}
	renamed := filepath.Join(dir, "renamed.img")
	if err := os.Rename(a, renamed); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(renamed); err != nil || !slices.Equal(got, []string{dev}) {
		t.Errorf("Find(renamed) = %v, %v; want [%s]", got, err, dev)
	}
	if err := Detach(dev); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(renamed); err != nil || len(got) != 0 {
		t.Errorf("Find after Detach = %v, %v; want none", got, err)
	}
	if err := Detach(dev); err != nil {
		t.Errorf("second Detach: %v", err)
	}
}

// A device whose backing file was deleted is not found for a new file,
// even one that reuses the inode number.
func TestFindSkipsDeletedBacking(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	a := image(t, dir, "a.img")
	dev, err := Attach(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(dev) })
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	b := image(t, dir, "b.img")
	if got, err := Find(b); err != nil || slices.Contains(got, dev) {
		t.Errorf("Find(b) = %v, %v; must not name %s, backed by a deleted file", got, err, dev)
	}
}

func TestAttachMissingFile(t *testing.T) {
	needRoot(t)
	if _, err := Attach(filepath.Join(t.TempDir(), "none")); !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Attach(missing) = %v, want not-exist", err)
	}
}
