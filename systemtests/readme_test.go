package systemtests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// readmeBlock returns the first ```sh block of README.md after the line
// holding marker.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(s[i:])
	if m == nil {
		t.Fatalf("README.md has no sh block after %q", marker)
	}
	return m[1]
}

// The README's walkthrough, typed as a newcomer types it: both blocks run
// unchanged but for the addresses (volmaster's URL, the plugin's name and
// the binaries' directory) against the real daemons and a real dockerd
// whose only image is the one the README says how to make, named busybox.
func TestReadmeWalkthrough(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, loop devices and mounts")
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	plugin := "vpsys-readme"
	startVolplugin(t, vm, data, plugin, "hostA")
	d := dockertest.Start(t, "vp-readme")
	docker(t, d, "tag", d.Image(t), "busybox")

	script := readmeBlock(t, "With `make run` going, in another terminal:") +
		readmeBlock(t, "With Docker (and `make run` going):")
	script = strings.NewReplacer(
		"http://127.0.0.1:9005", vm.URL,
		"bin/volcli", filepath.Join(binDir, "volcli"),
		"-d volplugin ", "-d "+plugin+" ",
	).Replace(script)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = d.Env()
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, _ = d.Docker(ctx, "rm", "-f", "db")
		_, _, _ = d.Docker(ctx, "volume", "rm", "policy1/db")
	})
	if err != nil {
		t.Fatalf("the README's walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{"volume policy1/nope not found", "exit 3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, out)
		}
	}
	// The file is read back twice: before the remove, and after the restore.
	if n := strings.Count("\n"+string(out), "\nhi\n"); n != 2 {
		t.Errorf("walkthrough read the file back %d times, want 2:\n%s", n, out)
	}
}
