package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMkdirMountAndRemoveDirs(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "policy", "vol")
	created, err := MkdirMount(mnt)
	if err != nil || created != filepath.Join(root, "policy") {
		t.Fatalf("MkdirMount = %q, %v; want %q", created, err, filepath.Join(root, "policy"))
	}
	if again, err := MkdirMount(mnt); err != nil || again != "" {
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
	if _, err := MkdirMount(mnt); err == nil {
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
