package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// asNobody runs argv as user and group 65534 with no supplementary groups.
func asNobody(argv ...string) (string, error) {
	out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// A set-uid root program or a device node written into a volume (by a
// container) gives a host user nothing: volumes are mounted nosuid,nodev
// (noexec too when the policy says so), and the directories above them are
// 0700, so no other host user even reaches a volume's files.
func TestMountsAreNosuidNodevAndPrivate(t *testing.T) {
	needRoot(t, "setpriv")
	for _, noexec := range []bool{false, true} {
		b := newBackend(t)
		v := ext4Vol("vol", 32*mib)
		v.NoExec = noexec
		mustCreate(t, b, v)
		m := mustMount(t, b, v)

		infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(m.Path))
		if err != nil || len(infos) != 1 {
			t.Fatalf("mountinfo of %s: %v, %v", m.Path, infos, err)
		}
		opts := "," + infos[0].Options + ","
		for _, o := range []string{"nosuid", "nodev"} {
			if !strings.Contains(opts, ","+o+",") {
				t.Errorf("mount options %q lack %s", infos[0].Options, o)
			}
		}
		if got := strings.Contains(opts, ",noexec,"); got != noexec {
			t.Errorf("mount options %q: noexec %v, want %v", infos[0].Options, got, noexec)
		}

		for _, d := range []string{filepath.Dir(filepath.Dir(m.Path)), filepath.Dir(m.Path)} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: %v, %v; want no access for group and others", d, fi.Mode(), err)
			}
		}
		if out, err := asNobody("ls", m.Path); err == nil {
			t.Errorf("another host user listed the volume: %s", out)
		}

		// What a container would plant: a set-uid root copy of id(1), and
		// a device node for the host's memory.
		suid := filepath.Join(m.Path, "id")
		idBin, _ := exec.LookPath("id")
		data, err := os.ReadFile(idBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(suid, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(suid, 0o4755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mknod(filepath.Join(m.Path, "mem"), syscall.S_IFCHR|0o666, 1<<8|1); err != nil {
			t.Fatal(err)
		}
		// Even through a world-traversable bind mount (as a container sees
		// it), the flags hold.
		view := filepath.Join(t.TempDir(), "view")
		if err := os.Mkdir(view, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(view), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "--bind", m.Path, view).CombinedOutput(); err != nil {
			t.Fatalf("bind mount: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", view).Run() })
		out, err := asNobody(filepath.Join(view, "id"), "-u")
		switch {
		case noexec && err == nil:
			t.Errorf("noexec volume ran a program: %s", out)
		case !noexec && (err != nil || out != "65534"):
			t.Errorf("set-uid root program in a volume ran with euid %q (%v), want 65534", out, err)
		}
		if f, err := os.Open(filepath.Join(view, "mem")); err == nil {
			f.Close()
			t.Error("a device node in a volume opened")
		}
		if out, err := exec.Command("umount", view).CombinedOutput(); err != nil {
			t.Fatalf("umount bind: %v\n%s", err, out)
		}
	}
}
