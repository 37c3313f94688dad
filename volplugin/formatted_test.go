package volplugin

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
)

// A blank volume is formatted by its first mount, which marks it formatted
// in volmaster before Docker gets the mount; a later mount leaves the mark.
// Its primary superblock zeroed, the next mount is refused with the repair
// command (nothing written, the host's health untouched), and that command
// gets the data back.
func TestFormattedOnceThroughVolmaster(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"e2fsck", "dd", "blockdev"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	ctx := context.Background()
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	// Two failed mounts would make it refuse mounts, were they counted.
	a := c.startHostWith(t, "hostA", root, Options{Health: HealthLimits{MountFailures: 2}})
	ref := config.VolumeRef{Policy: "policy1", Name: "db"}
	if _, e := a.call(t, "Create", map[string]any{"Name": ref.String()}); e != "" {
		t.Fatal(e)
	}
	if v, err := c.api.Volume(ctx, ref); err != nil || v.Formatted() {
		t.Fatalf("new volume: formatted %v, %v", v.Formatted(), err)
	}

	p := a.mount(t, ref.String(), "id1")
	marked, err := c.api.Volume(ctx, ref)
	if err != nil || !marked.Formatted() {
		t.Fatalf("after the first mount: formatted %v, %v; want marked", marked.Formatted(), err)
	}
	if err := os.WriteFile(filepath.Join(p, "data"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.unmount(t, ref.String(), "id1")
	a.mount(t, ref.String(), "id2")
	a.unmount(t, ref.String(), "id2")
	if again, _ := c.api.Volume(ctx, ref); !again.FormattedAt.Equal(marked.FormattedAt) {
		t.Fatalf("second mount moved the mark: %s, was %s", again.FormattedAt, marked.FormattedAt)
	}

	img := filepath.Join(c.dataDir, "images", "policy1", "db.img")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1024), 1024); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := sha(t, img)
	for i := range 3 {
		_, e := a.call(t, "Mount", map[string]string{"Name": ref.String(), "ID": "id3"})
		if !strings.Contains(e, "not formatted again") || !strings.Contains(e, "e2fsck -b ") {
			t.Fatalf("mount %d of the damaged volume: %q, want a refusal naming e2fsck -b", i, e)
		}
		if i == 0 {
			t.Logf("refused: %s", e)
		}
		if sha(t, img) != before {
			t.Fatal("the refused mount wrote to the image")
		}
		if i == 2 {
			if info := a.info(t); !info.Health.Healthy {
				t.Fatalf("refused mounts of a damaged volume made the host refuse mounts: %+v", info.Health)
			}
			m := regexp.MustCompile("`(e2fsck -b [0-9]+ -B [0-9]+ [^`]+)`").FindStringSubmatch(e)
			if m == nil {
				t.Fatalf("no e2fsck command in %q", e)
			}
			argv := slices.Insert(strings.Fields(m[1]), 1, "-y")
			if _, err := sysexec.Run(ctx, 0, argv...); err != nil && sysexec.ExitCode(err) != 1 {
				t.Fatalf("%v: %v", argv, err)
			}
		}
	}
	if _, err := c.api.Use(ctx, ref); err == nil {
		t.Error("a refused mount left its lock")
	}
	p = a.mount(t, ref.String(), "id4")
	if got, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(got) != "keep me" {
		t.Fatalf("after e2fsck -b: %q, %v", got, err)
	}
	a.unmount(t, ref.String(), "id4")
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
