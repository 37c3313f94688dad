package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMkdirMountAndRemoveDirs(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "policy", "vol")
	created, err := MkdirMount(root, mnt)
	if err != nil || created != filepath.Join(root, "policy") {
		t.Fatalf("MkdirMount = %q, %v; want %q", created, err, filepath.Join(root, "policy"))
	}
	if again, err := MkdirMount(root, mnt); err != nil || again != "" {
		t.Fatalf("second MkdirMount = %q, %v; want \"\", nil", again, err)
	}
	if err := RemoveDirs(mnt, created); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(created); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", created, err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("root removed: %v", err)
	}
}

func TestMkdirMountRefusesSymlink(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "link")
	if err := os.Symlink(t.TempDir(), mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := MkdirMount(root, mnt); err == nil {
		t.Fatal("MkdirMount accepted a symlink")
	}
}

func TestMountAtMissing(t *testing.T) {
	if m, err := MountAt(filepath.Join(t.TempDir(), "nope")); m != nil || err != nil {
		t.Fatalf("MountAt = %v, %v; want nil, nil", m, err)
	}
	if ms, err := MountsUnder(filepath.Join(t.TempDir(), "nope")); ms != nil || err != nil {
		t.Fatalf("MountsUnder = %v, %v; want nil, nil", ms, err)
	}
}

func TestContentString(t *testing.T) {
	for c, want := range map[Content]string{
		{Blank: true}:    "nothing",
		{FSType: "ext4"}: "ext4",
		{PTType: "gpt"}:  "a gpt partition table",
		{}:               "unrecognised content",
	} {
		if got := c.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", c, got, want)
		}
	}
}

// The mount root and the directories under it are made 0700 whatever they
// were; a symlink planted as a policy directory is refused, as is a path
// outside the root.
func TestMkdirMountMakesPrivateDirs(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "open"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "open"), 0o777); err != nil {
		t.Fatal(err)
	}
	for _, mnt := range []string{filepath.Join(root, "open", "v"), filepath.Join(root, "new", "v")} {
		if _, err := MkdirMount(root, mnt); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{root, filepath.Dir(mnt), mnt} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v, %v; want 0700", d, fi.Mode().Perm(), err)
			}
		}
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(root, "planted")); err != nil {
		t.Fatal(err)
	}
	if _, err := MkdirMount(root, filepath.Join(root, "planted", "v")); err == nil {
		t.Error("MkdirMount went through a symlinked policy directory")
	}
	if _, err := MkdirMount(root, filepath.Join(t.TempDir(), "p", "v")); err == nil {
		t.Error("MkdirMount made a mount point outside its root")
	}
}
