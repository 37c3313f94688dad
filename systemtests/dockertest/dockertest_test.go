package dockertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunEcho(t *testing.T) {
	t.Parallel()
	d := Start(t, "dt-echo")
	img := d.Image(t)
	out, _, err := d.Docker(t.Context(), "run", "--rm", "--network", "none", img, "sh", "-c", "echo hi")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "hi" {
		t.Fatalf("output %q, want hi", out)
	}
}

var rateRE = regexp.MustCompile(`[0-9.,]+ (kB|MB|MiB|GB|GiB)/s`)

func TestGnuDDRate(t *testing.T) {
	t.Parallel()
	d := Start(t, "dt-dd")
	img := d.Image(t)
	_, errOut, err := d.Docker(t.Context(), "run", "--rm", "--network", "none", img,
		"/usr/bin/gnudd", "if=/dev/zero", "of=/tmp/x", "bs=1M", "count=10", "oflag=direct")
	if err != nil {
		t.Fatal(err)
	}
	// dd picks the unit by magnitude: 1.2 GB/s on an idle disk, MB/s when throttled.
	if !rateRE.MatchString(errOut) {
		t.Fatalf("dd output mentions no rate: %q", errOut)
	}
	rate, err := DDRate(errOut)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dd: %s (%.1f MiB/s)", rateRE.FindString(errOut), rate/(1<<20))
}

func TestDDRateParse(t *testing.T) {
	out := "10+0 records in\n10+0 records out\n10485760 bytes (10 MB, 10 MiB) copied, 0.5 s, 21.0 MB/s\n"
	r, err := DDRate(out)
	if err != nil || r != 20971520 {
		t.Fatalf("DDRate = %v, %v", r, err)
	}
	if _, err := DDRate("10+0 records in\n"); err == nil {
		t.Fatal("DDRate accepted output without a summary")
	}
}

// The daemon sees only its own plugins dir, and mounts made on the host under
// its shared mount after it started.
func TestPluginsDirAndSharedMount(t *testing.T) {
	t.Parallel()
	plugins, mnt := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(plugins, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := Start(t, "dt-iso", WithPluginsDir(plugins), WithSharedMount(mnt))

	root := filepath.Join("/proc", strconv.Itoa(d.PID), "root")
	if _, err := os.Stat(filepath.Join(root, "run/docker/plugins/marker")); err != nil {
		t.Errorf("daemon does not see its plugins dir: %v", err)
	}
	if _, err := os.Stat("/run/docker/plugins/marker"); err == nil {
		t.Errorf("the plugins dir leaked into the host's /run/docker/plugins")
	}

	sub := filepath.Join(mnt, "vol")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "dockertest", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", sub).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", sub, err, out)
		}
	})
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("from host"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A container bind-mounts the volume dir through the daemon's namespace.
	img := d.Image(t)
	out, _, err := d.Docker(ctx, "run", "--rm", "--network", "none", "-v", sub+":/v", img, "cat", "/v/f")
	if err != nil {
		t.Fatal(err)
	}
	if out != "from host" {
		t.Fatalf("container read %q from the later host mount, want %q", out, "from host")
	}
}
