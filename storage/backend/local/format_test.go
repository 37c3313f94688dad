package local

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// zeroAt overwrites n bytes of path at off with zeros.
func zeroAt(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// formattedWithData mounts v once (its first mkfs), writes a file into it
// and unmounts; it returns the file's content. v comes back Formatted, as
// the record would be.
func formattedWithData(t *testing.T, b *Backend, v *storage.Volume) []byte {
	t.Helper()
	mustCreate(t, b, *v)
	m := mustMount(t, b, *v)
	payload := randBytes(t, 256<<10)
	writeSync(t, filepath.Join(m.Path, "data.bin"), payload)
	mustUnmount(t, b, *v)
	v.Formatted = true
	return payload
}

// mountRefused mounts v, expecting err to be want, the image untouched and
// nothing left mounted or attached; it returns the error.
func mountRefused(t *testing.T, b *Backend, v storage.Volume, want error) error {
	t.Helper()
	p, _ := b.paths(v.Policy, v.Name)
	before := fileHash(t, p.image)
	_, err := b.Mount(context.Background(), v)
	if !errors.Is(err, want) || !errors.Is(err, storage.ErrWrongFilesystem) || strings.Contains(err.Error(), "rollback") {
		t.Fatalf("Mount = %v, want %v (a kind of ErrWrongFilesystem) and a clean rollback", err, want)
	}
	if fileHash(t, p.image) != before {
		t.Fatal("the refused Mount wrote to the image")
	}
	assertClean(t, b, v)
	t.Logf("refused: %v", err)
	return err
}

// e2fsckCmd is the e2fsck -b command an error names.
var e2fsckCmd = regexp.MustCompile("`(e2fsck -b [0-9]+ -B [0-9]+ [^`]+)`")

// e2fsckAsNamed runs the e2fsck -b command err names, with -y (answer
// yes), and checks that it finishes with the filesystem fixed (exit 0 or 1).
func e2fsckAsNamed(t *testing.T, err error) {
	t.Helper()
	m := e2fsckCmd.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error names no e2fsck -b command: %v", err)
	}
	argv := slices.Insert(strings.Fields(m[1]), 1, "-y")
	t.Logf("running %v", argv)
	if _, err := sysexec.Run(context.Background(), 0, argv...); err != nil && sysexec.ExitCode(err) != 1 {
		t.Fatalf("%v: %v", argv, err)
	}
}

func readBack(t *testing.T, b *Backend, v storage.Volume, want []byte) {
	t.Helper()
	m := mustMount(t, b, v)
	got, err := os.ReadFile(filepath.Join(m.Path, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatal("data read back after the repair differs from data written")
	}
	mustUnmount(t, b, v)
	assertClean(t, b, v)
}

// A formatted volume whose primary ext4 superblock is zeroed is refused,
// never reformatted; the error names e2fsck -b with a backup superblock,
// and that command gets the data back.
func TestMountDamagedExtRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		mkfs []string
	}{
		{"1k-blocks", 64 * mib, []string{"mkfs.ext4", "-q", "-m0", "-b", "1024", "%"}},
		{"4k-blocks", 160 * mib, []string{"mkfs.ext4", "-q", "-m0", "-b", "4096", "%"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needRoot(t, "e2fsck", "dd", "blockdev")
			b := newBackend(t)
			v := ext4Vol("vol", tc.size)
			v.Mkfs = tc.mkfs
			payload := formattedWithData(t, b, &v)
			p, _ := b.paths(v.Policy, v.Name)
			zeroAt(t, p.image, 1024, 1024)

			err := mountRefused(t, b, v, storage.ErrDamaged)
			if !strings.Contains(err.Error(), p.image) {
				t.Errorf("error does not name the image %s to repair: %v", p.image, err)
			}
			e2fsckAsNamed(t, err)
			readBack(t, b, v, payload)
		})
	}
}

// A volume not (yet) marked formatted whose primary superblock is zeroed,
// or whose whole first MiB is, is not formatted: its backup superblocks
// show a filesystem. This covers volumes made before the mark existed and a
// mark that did not reach volmaster.
func TestMountNotBlankRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		off, len int64
	}{
		{"primary-superblock", 1024, 1024},
		{"first-mib", 0, mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needRoot(t, "e2fsck", "dd", "blockdev")
			b := newBackend(t)
			v := ext4Vol("vol", 64*mib)
			payload := formattedWithData(t, b, &v)
			v.Formatted = false
			p, _ := b.paths(v.Policy, v.Name)
			zeroAt(t, p.image, tc.off, tc.len)

			err := mountRefused(t, b, v, storage.ErrNotBlank)
			if !strings.Contains(err.Error(), "backup superblock at block 8193") {
				t.Errorf("error does not tell of the backup superblock: %v", err)
			}
			if tc.off == 1024 {
				// Only the primary superblock is gone: e2fsck -b gets it all back.
				e2fsckAsNamed(t, err)
				readBack(t, b, v, payload)
			}
		})
	}
}

// Data blkid does not recognise in the first MiB stops a first format.
func TestMountGarbageNotFormatted(t *testing.T) {
	needRoot(t, "dd", "blockdev")
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	f, err := os.OpenFile(p.image, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("not a filesystem"), 700<<10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = mountRefused(t, b, v, storage.ErrNotBlank)
	if !strings.Contains(err.Error(), "data at byte 716800") {
		t.Errorf("error does not say where the data is: %v", err)
	}
}

// A blank volume is formatted once; marked formatted, it is mounted with
// its filesystem, and a wiped one is refused rather than formatted again.
func TestMountFormatsBlankOnce(t *testing.T) {
	needRoot(t, "dd", "blockdev")
	ctx := context.Background()
	b := newBackend(t)
	v := ext4Vol("vol", 64*mib)
	mustCreate(t, b, v)
	m := mustMount(t, b, v)
	writeSync(t, filepath.Join(m.Path, "keep"), []byte("x"))
	mustUnmount(t, b, v)
	v.Formatted = true
	m = mustMount(t, b, v)
	if _, err := os.Stat(filepath.Join(m.Path, "keep")); err != nil {
		t.Fatalf("the second mount lost the first one's file: %v", err)
	}
	mustUnmount(t, b, v)
	p, _ := b.paths(v.Policy, v.Name)
	if _, err := sysexec.Run(ctx, 0, "wipefs", "-a", p.image); err != nil {
		t.Skipf("wipefs: %v", err)
	}
	mountRefused(t, b, v, storage.ErrDamaged)
}

// xfs: a formatted volume with its primary superblock zeroed is refused
// with xfs_repair named, which gets the data back; never formatted, the
// same image, or one with its whole first MiB zeroed, is not formatted.
func TestMountDamagedXFSRefused(t *testing.T) {
	needRoot(t, "mkfs.xfs", "xfs_repair", "dd", "blockdev")
	b := newBackend(t)
	v := ext4Vol("vol", 320*mib)
	v.Filesystem, v.Mkfs = "xfs", []string{"mkfs.xfs", "-q", "%"}
	payload := formattedWithData(t, b, &v)
	p, _ := b.paths(v.Policy, v.Name)
	zeroAt(t, p.image, 0, 512)

	err := mountRefused(t, b, v, storage.ErrDamaged)
	want := "`xfs_repair -f " + p.image + "`"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error does not name %s: %v", want, err)
	}
	unformatted := v
	unformatted.Formatted = false
	mountRefused(t, b, unformatted, storage.ErrNotBlank)

	if out, err := exec.Command("xfs_repair", "-f", p.image).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair: %v\n%s", err, out)
	}
	readBack(t, b, v, payload)

	zeroAt(t, p.image, 0, mib)
	err = mountRefused(t, b, unformatted, storage.ErrNotBlank)
	if !strings.Contains(err.Error(), "xfs secondary superblock") {
		t.Errorf("error does not tell of the xfs secondary superblock: %v", err)
	}
}
