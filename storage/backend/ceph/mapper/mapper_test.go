package mapper

// The krbd and nbd mappers cannot run for real on the CI machines (their
// kernels have neither the rbd nor the nbd module). These tests drive them
// against a FAKE sysfs and /proc in a temporary directory and FAKE tools (a
// Run function that plays rbd / rbd-nbd by creating the sysfs entries the
// real ones would, and a fake rbd binary that hangs). They check the argv
// the mappers run and how they find devices, not the kernel's behaviour. The
// fuse mapper runs for real in the ceph backend's tests.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHost is a fake sysfs, /proc and /dev with a fake command runner.
type fakeHost struct {
	t    *testing.T
	root string

	mu    sync.Mutex
	calls [][]string
	// handle plays the tool; nil means success without effect.
	handle func(argv []string) error
}

func newFakeHost(t *testing.T) *fakeHost {
	return &fakeHost{t: t, root: t.TempDir()}
}

func (h *fakeHost) env() Env {
	return Env{
		Run:      h.run,
		LookPath: func(file string) (string, error) { return "/fake/bin/" + file, nil },
		SysRoot:  filepath.Join(h.root, "sys"),
		ProcRoot: filepath.Join(h.root, "proc"),
		DevRoot:  "/dev",
		Timeout:  time.Second,
		RunDir:   filepath.Join(h.root, "run"),
	}
}

func (h *fakeHost) run(ctx context.Context, _ time.Duration, argv ...string) ([]byte, error) {
	h.mu.Lock()
	h.calls = append(h.calls, argv)
	handle := h.handle
	h.mu.Unlock()
	if handle != nil {
		return nil, handle(argv)
	}
	return nil, nil
}

func (h *fakeHost) ran() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// write creates file rel under the fake root with content.
func (h *fakeHost) write(rel, content string) {
	h.t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) remove(rel string) {
	h.t.Helper()
	if err := os.RemoveAll(filepath.Join(h.root, rel)); err != nil {
		h.t.Fatal(err)
	}
}

var testImage = Image{Pool: "rbd", Name: "pol:vol", Conf: "/etc/c.conf", User: "vp", Keyring: "/k"}

func TestDetect(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		setup   func(h *fakeHost)
		loadRBD bool // the fake modprobe rbd creates /sys/bus/rbd
		noTools []string
		want    string
	}{
		{name: "krbd loaded", setup: func(h *fakeHost) { h.write("sys/bus/rbd/add", "") }, want: KRBD},
		{name: "krbd after modprobe", loadRBD: true, want: KRBD},
		{name: "nbd", setup: func(h *fakeHost) { h.write("sys/module/nbd/refcnt", "0") }, want: NBD},
		{name: "krbd without rbd tool", setup: func(h *fakeHost) {
			h.write("sys/bus/rbd/add", "")
			h.write("sys/module/nbd/refcnt", "0")
		}, noTools: []string{"rbd"}, want: NBD},
		{name: "fuse", setup: func(h *fakeHost) { h.write("dev/fuse", "") }, want: Fuse},
		{name: "nothing", noTools: []string{"rbd-fuse"}, setup: func(h *fakeHost) { h.write("dev/fuse", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			env := h.env()
			env.DevRoot = filepath.Join(h.root, "dev")
			h.handle = func(argv []string) error {
				if tc.loadRBD && slices.Equal(argv, []string{"modprobe", "rbd"}) {
					return os.MkdirAll(filepath.Join(env.SysRoot, "bus", "rbd"), 0o755)
				}
				return errors.New("modprobe: module not found")
			}
			env.LookPath = func(file string) (string, error) {
				if slices.Contains(tc.noTools, file) {
					return "", errors.New("not found")
				}
				return "/fake/bin/" + file, nil
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			got, err := Detect(ctx, env)
			if tc.want == "" {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Detect = %q, %v; want ErrUnavailable", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Detect = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// With NoLoad, Detect asks modprobe whether it could load a module and
// loads nothing.
func TestDetectNoLoad(t *testing.T) {
	for _, tc := range []struct {
		name     string
		loadable bool
		want     string
	}{{"rbd loadable", true, KRBD}, {"no rbd module", false, Fuse}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			env := h.env()
			env.DevRoot, env.NoLoad = filepath.Join(h.root, "dev"), true
			env.LookPath = func(file string) (string, error) { return "/fake/bin/" + file, nil }
			h.write("dev/fuse", "")
			var calls [][]string
			h.handle = func(argv []string) error {
				calls = append(calls, argv)
				if tc.loadable && slices.Equal(argv, []string{"modprobe", "--dry-run", "--quiet", "rbd"}) {
					return nil
				}
				return errors.New("modprobe: module not found")
			}
			got, err := Detect(context.Background(), env)
			if err != nil || got != tc.want {
				t.Fatalf("Detect = %q, %v; want %q", got, err, tc.want)
			}
			for _, argv := range calls {
				if !slices.Contains(argv, "--dry-run") {
					t.Errorf("NoLoad Detect ran %q", argv)
				}
			}
			if _, err := os.Stat(filepath.Join(env.SysRoot, "bus", "rbd")); err == nil {
				t.Error("NoLoad Detect loaded rbd")
			}
		})
	}
}

func TestNewUnknown(t *testing.T) {
	if _, err := New(context.Background(), "iscsi", Env{}); err == nil {
		t.Fatal("New(iscsi) succeeded")
	}
	if _, err := New(context.Background(), Fuse, Env{RunDir: "rel"}); err == nil {
		t.Fatal("New(fuse, relative run dir) succeeded")
	}
}

// TestKRBDFakeSysfs maps and unmaps against a fake /sys/bus/rbd, with a fake
// rbd tool that adds and removes the entries the kernel would.
func TestKRBDFakeSysfs(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t)
	// A snapshot mapping and another image are not ours.
	h.write("sys/bus/rbd/devices/0/pool", "rbd\n")
	h.write("sys/bus/rbd/devices/0/name", "pol:vol\n")
	h.write("sys/bus/rbd/devices/0/current_snap", "s1\n")
	h.write("sys/bus/rbd/devices/1/pool", "rbd\n")
	h.write("sys/bus/rbd/devices/1/name", "pol:other\n")
	h.write("sys/bus/rbd/devices/1/current_snap", "-\n")
	h.handle = func(argv []string) error {
		switch {
		case slices.Equal(argv[:3], []string{"rbd", "device", "map"}):
			h.write("sys/bus/rbd/devices/7/pool", "rbd\n")
			h.write("sys/bus/rbd/devices/7/pool_ns", "\n")
			h.write("sys/bus/rbd/devices/7/name", "pol:vol\n")
			h.write("sys/bus/rbd/devices/7/current_snap", "-\n")
			h.write("sys/block/rbd7/size", "2048\n")
		case slices.Equal(argv[:3], []string{"rbd", "device", "unmap"}):
			h.remove("sys/bus/rbd/devices/7")
		default:
			return fmt.Errorf("unexpected %q", argv)
		}
		return nil
	}
	m, err := New(ctx, KRBD, h.env())
	if err != nil {
		t.Fatal(err)
	}
	if dev, err := m.Device(ctx, testImage); err != nil || dev != "" {
		t.Fatalf("Device before map = %q, %v", dev, err)
	}
	dev, err := m.Map(ctx, testImage)
	if err != nil || dev != "/dev/rbd7" {
		t.Fatalf("Map = %q, %v; want /dev/rbd7", dev, err)
	}
	if again, err := m.Map(ctx, testImage); err != nil || again != dev {
		t.Fatalf("second Map = %q, %v", again, err)
	}
	want := [][]string{{"rbd", "device", "map", "--conf", "/etc/c.conf", "--id", "vp", "--keyring", "/k",
		"--options", "noshare", "rbd/pol:vol"}}
	if got := h.ran(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("ran %q, want %q", got, want)
	}
	if err := m.Refresh(ctx, testImage, dev, 1<<20); err != nil {
		t.Fatalf("Refresh to the current size: %v", err)
	}
	if err := m.Refresh(ctx, testImage, dev, 2<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh to a size the device never reaches = %v, want a deadline error", err)
	}
	if err := m.Unmap(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	if got := h.ran(); !slices.Equal(got[len(got)-1], []string{"rbd", "device", "unmap", "/dev/rbd7"}) {
		t.Fatalf("last command %q", got[len(got)-1])
	}
	if err := m.Unmap(ctx, testImage); err != nil {
		t.Fatalf("Unmap of an unmapped image: %v", err)
	}
	if n := len(h.ran()); n != 2 {
		t.Fatalf("ran %d commands, want 2 (map, unmap)", n)
	}
}

// TestNBDFakeSysfs finds rbd-nbd mappings through a fake /sys/block/nbd*/pid
// and /proc/<pid>/cmdline, with a fake rbd-nbd.
func TestNBDFakeSysfs(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t)
	h.write("sys/block/nbd0/pid", "100\n") // another image
	h.write("proc/100/cmdline", "rbd-nbd\x00map\x00rbd/pol:other\x00")
	h.write("sys/block/nbd1/pid", "101\n") // server gone
	h.handle = func(argv []string) error {
		switch {
		case slices.Equal(argv[:2], []string{"rbd-nbd", "map"}):
			h.write("sys/block/nbd2/pid", "102\n")
			h.write("sys/block/nbd2/size", "2048\n")
			h.write("proc/102/cmdline", strings.Join(argv, "\x00")+"\x00")
		case slices.Equal(argv, []string{"rbd-nbd", "unmap", "/dev/nbd2"}):
			h.remove("sys/block/nbd2")
			h.remove("proc/102")
		default:
			return fmt.Errorf("unexpected %q", argv)
		}
		return nil
	}
	m, err := New(ctx, NBD, h.env())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := m.Map(ctx, testImage)
	if err != nil || dev != "/dev/nbd2" {
		t.Fatalf("Map = %q, %v; want /dev/nbd2", dev, err)
	}
	want := []string{"rbd-nbd", "map", "--conf", "/etc/c.conf", "--id", "vp", "--keyring", "/k", "rbd/pol:vol"}
	if got := h.ran(); len(got) != 1 || !slices.Equal(got[0], want) {
		t.Fatalf("ran %q, want [%q]", got, want)
	}
	if got, err := m.Device(ctx, testImage); err != nil || got != dev {
		t.Fatalf("Device = %q, %v", got, err)
	}
	if err := m.Refresh(ctx, testImage, dev, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmap(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Device(ctx, testImage); err != nil || got != "" {
		t.Fatalf("Device after unmap = %q, %v", got, err)
	}
}

// TestHungToolFakeBinary puts a FAKE rbd that never returns first on PATH:
// Map must fail with a timeout instead of hanging.
func TestHungToolFakeBinary(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "rbd"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	env := Env{SysRoot: t.TempDir(), Timeout: 300 * time.Millisecond}
	m, err := New(context.Background(), KRBD, env)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = m.Map(context.Background(), testImage)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map with a hung rbd = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Map took %s", d)
	}
}

func TestImageValidate(t *testing.T) {
	for _, img := range []Image{
		{Pool: "", Name: "x"}, {Pool: "rbd", Name: ""}, {Pool: "rbd", Name: "a/b"},
		{Pool: "rbd", Name: "a@s"}, {Pool: "r b", Name: "x"}, {Pool: "rbd", Name: ".."},
		{Pool: "rbd", Name: "x", Keyring: "/a b"},
	} {
		if err := img.validate(); err == nil {
			t.Errorf("validate(%+v) = nil", img)
		}
	}
	if err := testImage.validate(); err != nil {
		t.Error(err)
	}
}

func TestServesImage(t *testing.T) {
	img := Image{Pool: "rbd", Name: "p:v"}
	for argv, want := range map[string]bool{
		"rbd-nbd map rbd/p:v":                 true,
		"/usr/bin/rbd-nbd map --id x rbd/p:v": true,
		"rbd-nbd map rbd/p:w":                 false,
		"rbd-nbd unmap rbd/p:v":               false,
		"rbd map rbd/p:v":                     false,
	} {
		if got := servesImage(strings.Fields(argv), img); got != want {
			t.Errorf("servesImage(%q) = %v", argv, got)
		}
	}
}
