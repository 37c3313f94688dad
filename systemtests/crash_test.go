package systemtests

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// volplugin killed with -9 in the middle of a Mount (its mkfs hangs), then
// started again: no lock, loop device or mount is left behind.
func TestKill9MidMountLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	data := t.TempDir()
	vm := startVolmaster(t, data)
	// The fault: a "filesystem" whose mkfs records its PID and hangs, so the
	// kill lands while Mount is under way.
	pidFile := filepath.Join(data, "mkfs.pid")
	hang := filepath.Join(data, "hang-mkfs")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 120\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	policy := `{"backend":"local","create":{"size":"16MB","filesystem":"hangfs"},"filesystems":{"hangfs":["` + hang + `","%"]}}`
	if _, e, code := volcli(t, vm.URL, policy, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "create", "policy1/v"); code != 0 {
		t.Fatalf("volume create: %s", e)
	}
	sockDir := filepath.Join(data, "plugins")
	vp := startVolplugin(t, vm, data, "vpsys-crash", "hostA", "--socket-dir", sockDir)
	sock := vp.lines["volplugin socket"]
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	go func() {
		resp, err := hc.Post("http://plugin/VolumeDriver.Mount", "application/json", bytes.NewReader([]byte(`{"Name":"policy1/v","ID":"m1"}`)))
		if err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mkfs never started\n%s", vp.logs())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	image := filepath.Join(data, "local", "images", "policy1", "v.img")
	t.Cleanup(func() {
		// Whatever a failure left attached goes, whatever the outcome.
		for _, line := range strings.Split(loops(t, image), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok {
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	})
	if loops(t, image) == "" {
		t.Fatal("no loop device while mkfs runs")
	}
	if _, _, code := volcli(t, vm.URL, "", "use", "get", "policy1/v"); code != 0 {
		t.Fatal("no lock while mkfs runs")
	}
	_ = vp.signal(syscall.SIGKILL)

	startVolplugin(t, vm, data, "vpsys-crash", "hostA", "--socket-dir", sockDir)
	if l := loops(t, image); l != "" {
		t.Errorf("loop device left after restart: %s", l)
	}
	if _, _, code := volcli(t, vm.URL, "", "use", "get", "policy1/v"); code != 3 {
		t.Errorf("lock left after restart (exit %d)", code)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), filepath.Join(data, "mnt")) {
		t.Errorf("mount left under %s", filepath.Join(data, "mnt"))
	}
}

// loops returns the loop devices backed by image.
func loops(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-j", image).Output()
	if err != nil {
		t.Fatalf("losetup -j: %v", err)
	}
	return strings.TrimSpace(string(out))
}
