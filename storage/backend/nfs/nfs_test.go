package nfs

// This kernel has no NFS client, so no test mounts NFS. The mount command is
// injected (Config.Run): a FAKE that records the argv Mount would run and,
// when the test runs as root, mounts a tmpfs named after the export in its
// place, so that Mounted, the repeated Mount and Unmount run against a real
// mount table. What the kernel's NFS client would do is not tested.

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

type fakeMount struct {
	real bool // stand a tmpfs in for the NFS mount

	mu    sync.Mutex
	calls [][]string
}

func (f *fakeMount) run(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, argv)
	f.mu.Unlock()
	if !f.real {
		return nil, nil
	}
	if argv[0] == "mount" {
		src, path := argv[len(argv)-2], argv[len(argv)-1]
		return sysexec.Run(ctx, timeout, "mount", "-t", "tmpfs", "-o", "size=1m", src, path)
	}
	return sysexec.Run(ctx, timeout, argv...)
}

func (f *fakeMount) ran() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func nfsVol(name string, opts map[string]string) storage.Volume {
	return storage.Volume{Policy: "shared", Name: name, Options: opts}
}

func TestMountArgv(t *testing.T) {
	v := nfsVol("v", map[string]string{OptSource: "filer:/export/v", OptMountOptions: "nfsvers=4.1,hard"})
	got, err := MountArgv(v, "/mnt/volplugin/shared/v")
	want := []string{"mount", "-t", "nfs", "-o", "nfsvers=4.1,hard,nosuid,nodev", "filer:/export/v", "/mnt/volplugin/shared/v"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("MountArgv = %q, %v; want %q", got, err, want)
	}
	v.Options = map[string]string{OptSource: "10.0.0.1:/"}
	if got, err := MountArgv(v, "/m"); err != nil || !slices.Equal(got, []string{"mount", "-t", "nfs", "-o", "nosuid,nodev", "10.0.0.1:/", "/m"}) {
		t.Fatalf("MountArgv without options = %q, %v", got, err)
	}
	// A policy's own options cannot undo nosuid and nodev: later options win.
	v = nfsVol("v", map[string]string{OptSource: "filer:/x", OptMountOptions: "suid,dev"})
	v.NoExec = true
	if got, err := MountArgv(v, "/m"); err != nil || !slices.Equal(got, []string{"mount", "-t", "nfs", "-o", "suid,dev,nosuid,nodev,noexec", "filer:/x", "/m"}) {
		t.Fatalf("MountArgv with suid,dev and noexec = %q, %v", got, err)
	}
	for _, bad := range []map[string]string{
		nil, {OptSource: ""}, {OptSource: "filer"}, {OptSource: "filer:export"}, {OptSource: ":/x"},
		{OptSource: "-oexec:/x"}, {OptSource: "filer:/a b"}, {OptSource: "f:/x", OptMountOptions: "a b"},
	} {
		if _, err := MountArgv(nfsVol("v", bad), "/m"); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("MountArgv(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestNew(t *testing.T) {
	b, err := New(Config{})
	if err != nil || b.mountRoot != config.DefaultMountPath || b.timeout != DefaultTimeout {
		t.Fatalf("New defaults = %+v, %v", b, err)
	}
	for _, cfg := range []Config{{MountRoot: "rel"}, {Timeout: -time.Second}} {
		if _, err := New(cfg); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

// TestMountFake runs Mount and Unmount with the FAKE mount command.
func TestMountFake(t *testing.T) {
	ctx := context.Background()
	f := &fakeMount{real: os.Geteuid() == 0}
	b, err := New(Config{MountRoot: t.TempDir(), Run: f.run})
	if err != nil {
		t.Fatal(err)
	}
	v := nfsVol("v", map[string]string{OptSource: "filer:/export/v", OptMountOptions: "hard"})
	t.Cleanup(func() { _ = b.Unmount(context.Background(), v) })
	m, err := b.Mount(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Mount{Volume: storage.ID{Policy: "shared", Name: "v"}, Device: "filer:/export/v", Path: b.MountPath(v)}
	if m != want {
		t.Fatalf("Mount = %+v, want %+v", m, want)
	}
	wantArgv := []string{"mount", "-t", "nfs", "-o", "hard,nosuid,nodev", "filer:/export/v", b.MountPath(v)}
	if got := f.ran(); len(got) != 1 || !slices.Equal(got[0], wantArgv) {
		t.Fatalf("ran %q, want [%q]", got, wantArgv)
	}
	if _, err := b.Mount(ctx, nfsVol("bad", nil)); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Mount without a source = %v, want ErrInvalid", err)
	}
	if _, err := b.Mount(ctx, nfsVol("../x", map[string]string{OptSource: "f:/x"})); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Mount of a bad name = %v, want ErrInvalid", err)
	}
	if !f.real {
		t.Skip("the rest needs root to stand a tmpfs in for the NFS mount")
	}
	if again, err := b.Mount(ctx, v); err != nil || again != want {
		t.Fatalf("second Mount = %+v, %v", again, err)
	}
	if n := len(f.ran()); n != 1 {
		t.Fatalf("second Mount ran a command (%d in all)", n)
	}
	if ms, err := b.Mounted(ctx); err != nil || !slices.Equal(ms, []storage.Mount{want}) {
		t.Fatalf("Mounted = %+v, %v", ms, err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmount(ctx, v); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	if _, err := os.Stat(b.MountPath(v)); !os.IsNotExist(err) {
		t.Fatalf("mount point left: %v", err)
	}
	if ms, err := b.Mounted(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("Mounted after Unmount = %+v, %v", ms, err)
	}
}

// TestMountFails: a failing mount leaves no mount point behind.
func TestMountFails(t *testing.T) {
	b, err := New(Config{MountRoot: t.TempDir(), Run: func(context.Context, time.Duration, ...string) ([]byte, error) {
		return nil, errors.New("mount.nfs: Connection refused")
	}})
	if err != nil {
		t.Fatal(err)
	}
	v := nfsVol("v", map[string]string{OptSource: "filer:/x"})
	if _, err := b.Mount(context.Background(), v); err == nil {
		t.Fatal("Mount succeeded")
	}
	if _, err := os.Stat(b.MountPath(v)); !os.IsNotExist(err) {
		t.Fatalf("mount point left after a failed mount: %v", err)
	}
}

// An NFS volume names its own export at creation as the original volplugin's
// did (docker volume create --opt mount=server:/path, from its docs, on its
// nfs/unlocked.json policy): the volume record carries it, and Mount mounts
// it (up to the mount call; the FAKE run stands in for mount(8)).
func TestVolumeOwnExport(t *testing.T) {
	doc, err := os.ReadFile("../../../config/testdata/original-policies/nfs/unlocked.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := config.DecodePolicy("shared", doc)
	if err != nil {
		t.Fatal(err)
	}
	ref := config.VolumeRef{Policy: "shared", Name: "myvolume"}
	rec, err := config.NewVolume(ref, p, 1, map[string]string{"mount": "127.0.0.1:/mynfsmount"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Unlocked || rec.Driver.Options[config.DriverSource] != "127.0.0.1:/mynfsmount" {
		t.Fatalf("record: unlocked %v, driver %+v", rec.Unlocked, rec.Driver)
	}
	v, err := storage.FromConfig(&rec)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMount{}
	b, err := New(Config{MountRoot: t.TempDir(), Run: f.run})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Mount(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	want := []string{"mount", "-t", "nfs", "-o", "nosuid,nodev", "127.0.0.1:/mynfsmount", b.MountPath(v)}
	if got := f.ran(); len(got) != 1 || !slices.Equal(got[0], want) {
		t.Fatalf("ran %q, want [%q]", got, want)
	}
	// Another volume of the same policy mounts its own export.
	rec2, err := config.NewVolume(config.VolumeRef{Policy: "shared", Name: "other"}, p, 1, map[string]string{"source": "filer:/other"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := storage.FromConfig(&rec2)
	if _, err := b.Mount(context.Background(), v2); err != nil {
		t.Fatal(err)
	}
	if got := f.ran(); len(got) != 2 || got[1][5] != "filer:/other" {
		t.Fatalf("second volume ran %q", got)
	}
}
