package fsutil

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

const mib = 1 << 20

// These run on image files: blkid, dd and mkfs work on files as on devices,
// without root.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"blkid", "dd", "mkfs.ext4"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

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
}

func hashOf(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestFindFilesystemBlank(t *testing.T) {
	needTools(t)
	found, err := findFilesystem(context.Background(), time.Minute, sparseImage(t, 256*mib))
	if err != nil || len(found) != 0 {
		t.Fatalf("findFilesystem(new sparse image) = %+v, %v; want nothing", found, err)
	}
	// Smaller than every probe offset, and than a MiB.
	found, err = findFilesystem(context.Background(), time.Minute, sparseImage(t, 8192))
	if err != nil || len(found) != 0 {
		t.Fatalf("findFilesystem(8 KiB image) = %+v, %v; want nothing", found, err)
	}
}

// Every ext block size's group 1 backup is found once the first MiB
// (primary superblock, group descriptors) is gone.
func TestFindFilesystemExtBackups(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	for _, bs := range []int64{1024, 2048, 4096} {
		img := sparseImage(t, 256*mib)
		if _, err := sysexec.Run(ctx, time.Minute, "mkfs.ext4", "-q", "-F", "-b", strconv.FormatInt(bs, 10), img); err != nil {
			t.Fatal(err)
		}
		zeroAt(t, img, 0, mib)
		if c, err := Probe(ctx, time.Minute, img); err != nil || !c.Blank {
			t.Fatalf("blkid after zeroing the first MiB = %v, %v; want blank", c, err)
		}
		found, err := findFilesystem(ctx, time.Minute, img)
		if err != nil || len(found) != 1 || found[0].ext == nil || found[0].ext.blockSize != bs {
			t.Fatalf("block size %d: findFilesystem = %+v, %v; want its backup superblock", bs, found, err)
		}
	}
}

func TestFormatIfBlankNeverTwice(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	img := sparseImage(t, 64*mib)
	v := storage.Volume{Policy: "p", Name: "v", Size: 64 * mib, Filesystem: "ext4", Mkfs: []string{"mkfs.ext4", "-q", "-F", "%"}}

	// Formatted, blank: refused, nothing written, recovery named on the
	// repair path and after its setup command.
	v.Formatted = true
	before := hashOf(t, img)
	_, err := FormatIfBlank(ctx, time.Minute, v, img, Repair{Path: "/dev/rbd/pool/img", Setup: "rbd map pool/img"})
	if !errors.Is(err, storage.ErrDamaged) || !errors.Is(err, storage.ErrWrongFilesystem) {
		t.Fatalf("FormatIfBlank(formatted, blank) = %v, want ErrDamaged", err)
	}
	for _, want := range []string{"`rbd map pool/img`", "`e2fsck -b <backup superblock> -B <block size> /dev/rbd/pool/img`", "`mke2fs -n /dev/rbd/pool/img`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if hashOf(t, img) != before {
		t.Fatal("FormatIfBlank wrote to a formatted volume")
	}

	// Never formatted: formatted once, then found.
	v.Formatted = false
	if fs, err := FormatIfBlank(ctx, time.Minute, v, img, Repair{}); err != nil || fs != "ext4" {
		t.Fatalf("FormatIfBlank(blank) = %q, %v", fs, err)
	}
	formatted := hashOf(t, img)
	v.Formatted = true
	if fs, err := FormatIfBlank(ctx, time.Minute, v, img, Repair{}); err != nil || fs != "ext4" || hashOf(t, img) != formatted {
		t.Fatalf("FormatIfBlank(formatted) = %q, %v; want ext4 and nothing written", fs, err)
	}

	// The primary superblock zeroed: refused both ways, the backup named.
	zeroAt(t, img, 1024, 1024)
	damaged := hashOf(t, img)
	for _, formatted := range []bool{true, false} {
		v.Formatted = formatted
		want := storage.ErrDamaged
		if !formatted {
			want = storage.ErrNotBlank
		}
		_, err := FormatIfBlank(ctx, time.Minute, v, img, Repair{})
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "`e2fsck -b 8193 -B 1024 "+img+"`") {
			t.Fatalf("FormatIfBlank(formatted=%v, primary superblock zeroed) = %v, want %v naming e2fsck -b 8193", formatted, err, want)
		}
		if hashOf(t, img) != damaged {
			t.Fatal("FormatIfBlank wrote to a damaged volume")
		}
	}
}
