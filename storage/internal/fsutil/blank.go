package fsutil

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// Repair names what an operator runs a filesystem repair on when Mount
// refuses a volume: Mount undoes its loop device or mapping when it fails,
// so the device it probed may be gone by then.
type Repair struct {
	// Path is what the repair command runs on: an image file, or the
	// device Setup makes. Empty: the probed device itself.
	Path string
	// File is set when Path is a regular file (xfs_repair needs -f).
	File bool
	// Setup is a command to run first (e.g. rbd map pool/image), or "".
	Setup string
	// Zeroed is set by a backend that proved the device reads as zeros
	// from end to end (an RBD image without a single allocated object):
	// blank beyond doubt, with no blkid or block scan to run.
	Zeroed bool
}

func (r Repair) on(dev string) Repair {
	if r.Path == "" {
		r.Path = dev
	}
	return r
}

// scanned is what findFilesystem reads for dev: the image file behind it
// when there is one (the same bytes; a loop device's writes reach its file
// by its last close, which every mount and mkfs has passed), which is read
// in process, rather than the device through a dd per block.
func (r Repair) scanned(dev string) string {
	if r.File && r.Path != "" {
		return r.Path
	}
	return dev
}

// blankBytes is how much of a device's start must read as zeros before it
// is formatted for the first time. A new sparse image or RBD image reads as
// zeros; every filesystem keeps metadata there (ext group descriptors and
// bitmaps, xfs AG headers), so a filesystem whose superblock alone is
// damaged is not blank.
const blankBytes = 1 << 20

// extBackup is where the first backup superblock of an ext2/3/4 filesystem
// is (block group 1) for one block size.
type extBackup struct {
	block     int64
	blockSize int64
}

// extBackups are group 1's backup superblocks for 1, 2 and 4 KiB blocks
// (8192, 16384 and 32768 blocks per group): what mke2fs -n lists first.
var extBackups = []extBackup{{8193, 1024}, {16384, 2048}, {32768, 4096}}

// Superblock fields (ext4 struct ext4_super_block).
const (
	extSuperSize    = 1024
	extLogBlockSize = 24 // le32: block size is 1024 << this
	extMagicOffset  = 56 // le16
	extMagic        = 0xEF53
	xfsMagic        = "XFSB"
	xfsDefaultAGs   = 4 // mkfs.xfs's AG count for a single disk under 4 TiB
	xfsDefaultBlock = 4096
	readBlock       = 4096
)

// finding is a sign of a filesystem on a device blkid calls blank.
type finding struct {
	what string
	ext  *extBackup // an ext backup superblock, for e2fsck -b
	xfs  bool       // an xfs secondary superblock
}

// devSize is the size of dev in bytes (a block device or a file).
func devSize(ctx context.Context, timeout time.Duration, dev string) (int64, bool, error) {
	fi, err := os.Stat(dev)
	if err != nil {
		return 0, false, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), false, nil
	}
	out, err := sysexec.Run(ctx, timeout, "blockdev", "--getsize64", dev)
	if err != nil {
		return 0, true, fmt.Errorf("size of %s: %w", dev, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("size of %s: blockdev printed %q", dev, out)
	}
	return n, true, nil
}

// readAt reads n bytes of dev at off: a regular file in process; a block
// device with dd (so that a hung device costs the timeout, not a goroutine)
// and O_DIRECT, bypassing its page cache, which may be stale for a reused
// loop or rbd device. It reads aligned 4 KiB blocks, as O_DIRECT needs;
// less than n bytes come back at the end of dev.
func readAt(ctx context.Context, timeout time.Duration, dev string, block bool, off, n int64) ([]byte, error) {
	first := off / readBlock
	count := (off%readBlock + n + readBlock - 1) / readBlock
	var out []byte
	var err error
	if block {
		out, err = sysexec.Run(ctx, timeout, "dd", "if="+dev, "bs="+strconv.Itoa(readBlock),
			"skip="+strconv.FormatInt(first, 10), "count="+strconv.FormatInt(count, 10), "status=none", "iflag=direct")
	} else {
		out, err = readFile(dev, first*readBlock, count*readBlock)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dev, err)
	}
	start := off % readBlock
	if int64(len(out)) <= start {
		return nil, nil
	}
	return out[start:min(int64(len(out)), start+n)], nil
}

// readFile reads n bytes of a regular file at off (fewer at its end). A
// local file read needs no process of its own to be bounded.
func readFile(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:got], nil
}

// findFilesystem looks for what blkid's probe of the primary superblocks
// misses: data in the first MiB, an ext backup superblock in block group 1
// (1, 2 and 4 KiB blocks), an xfs secondary superblock where mkfs.xfs puts
// AG 1 by default. Nothing found means provably blank as far as a new
// image goes: it reads as zeros.
func findFilesystem(ctx context.Context, timeout time.Duration, dev string) ([]finding, error) {
	size, block, err := devSize(ctx, timeout, dev)
	if err != nil {
		return nil, err
	}
	var found []finding
	for _, b := range extBackups {
		off := b.block * b.blockSize
		if off+extSuperSize > size {
			continue
		}
		sb, err := readAt(ctx, timeout, dev, block, off, extSuperSize)
		if err != nil {
			return nil, err
		}
		if len(sb) == extSuperSize && binary.LittleEndian.Uint16(sb[extMagicOffset:]) == extMagic &&
			int64(1024)<<binary.LittleEndian.Uint32(sb[extLogBlockSize:]) == b.blockSize {
			found = append(found, finding{
				what: fmt.Sprintf("an ext2/3/4 backup superblock at block %d (block size %d)", b.block, b.blockSize),
				ext:  &b,
			})
		}
	}
	dblocks := size / xfsDefaultBlock
	for _, ag := range []int64{dblocks / xfsDefaultAGs, (dblocks + xfsDefaultAGs - 1) / xfsDefaultAGs} {
		off := ag * xfsDefaultBlock
		if ag == 0 || off+int64(len(xfsMagic)) > size {
			continue
		}
		sb, err := readAt(ctx, timeout, dev, block, off, int64(len(xfsMagic)))
		if err != nil {
			return nil, err
		}
		if string(sb) == xfsMagic {
			found = append(found, finding{what: fmt.Sprintf("an xfs secondary superblock at byte %d", off), xfs: true})
			break
		}
	}
	head, err := readAt(ctx, timeout, dev, block, 0, min(size, blankBytes))
	if err != nil {
		return nil, err
	}
	for i, c := range head {
		if c != 0 {
			found = append(found, finding{what: fmt.Sprintf("data at byte %d of its first MiB", i)})
			break
		}
	}
	return found, nil
}

// checkBlank refuses (storage.ErrNotBlank) a device blkid calls blank that
// is not provably blank, before its first mkfs.
func checkBlank(ctx context.Context, timeout time.Duration, v storage.Volume, dev string, r Repair) error {
	found, err := findFilesystem(ctx, timeout, r.scanned(dev))
	if err != nil {
		return fmt.Errorf("check that %s is blank before formatting it: %w", dev, err)
	}
	if len(found) == 0 {
		return nil
	}
	whats := make([]string, len(found))
	var ext *extBackup
	xfs := false
	for i, f := range found {
		whats[i] = f.what
		if ext == nil {
			ext = f.ext
		}
		xfs = xfs || f.xfs
	}
	msg := fmt.Sprintf("%s holds no filesystem blkid recognises but is not blank (%s): perhaps a damaged filesystem, so it is not formatted as %s",
		dev, strings.Join(whats, "; "), v.Filesystem)
	switch {
	case ext != nil:
		msg += "; " + repairExt(r, ext)
	case xfs:
		msg += "; " + repairXFS(r)
	default:
		msg += "; " + howTo(r, "inspect") + fmt.Sprintf("e.g. `e2fsck -n %s` or `xfs_repair -n %s%s`", r.Path, fileFlag(r), r.Path)
	}
	msg += "; if its data is not needed (a new volume whose first mkfs was cut short, say), remove the volume and create it again"
	return fmt.Errorf("%s: %w", msg, storage.ErrNotBlank)
}

// damaged is the error for a formatted volume whose filesystem blkid does
// not recognise: it names the repair command for the volume's filesystem
// (and the backup superblock, if one is found). Nothing is written.
func damaged(ctx context.Context, timeout time.Duration, v storage.Volume, dev string, r Repair) error {
	msg := fmt.Sprintf("%s was formatted as %s but holds no filesystem blkid recognises (a damaged superblock?); it is not formatted again", dev, v.Filesystem)
	switch {
	case IsExt(v.Filesystem):
		var backup *extBackup
		found, err := findFilesystem(ctx, timeout, r.scanned(dev))
		if err != nil {
			msg += fmt.Sprintf(" (looking for backup superblocks: %v)", err)
		}
		for _, f := range found {
			if f.ext != nil {
				backup = f.ext
				break
			}
		}
		msg += "; " + repairExt(r, backup)
	case v.Filesystem == "xfs":
		msg += "; " + repairXFS(r)
	default:
		msg += "; " + howTo(r, "repair") + fmt.Sprintf("`fsck.%s %s`, then mount it again", v.Filesystem, r.Path)
	}
	return fmt.Errorf("%s: %w", msg, storage.ErrDamaged)
}

// howTo introduces a repair command: with the volume unmounted
// everywhere, after r.Setup if there is one.
func howTo(r Repair, what string) string {
	s := "to " + what + " it, with the volume unmounted everywhere, "
	if r.Setup != "" {
		s += "map it (`" + r.Setup + "`) and "
	}
	return s + "run "
}

func fileFlag(r Repair) string {
	if r.File {
		return "-f "
	}
	return ""
}

func repairExt(r Repair, b *extBackup) string {
	if b != nil {
		return howTo(r, "repair") + fmt.Sprintf("`e2fsck -b %d -B %d %s` (a backup superblock; `e2fsck -n -b %d -B %d %s` checks without writing), then mount it again",
			b.block, b.blockSize, r.Path, b.block, b.blockSize, r.Path)
	}
	return howTo(r, "repair") + fmt.Sprintf("`e2fsck -b <backup superblock> -B <block size> %s`, then mount it again; "+
		"`mke2fs -n %s` lists where mkfs put the backups (it writes nothing; give it the options the volume was formatted with)", r.Path, r.Path)
}

func repairXFS(r Repair) string {
	return howTo(r, "repair") + fmt.Sprintf("`xfs_repair %s%s` (it finds a secondary superblock; `xfs_repair -n %s%s` checks without writing), then mount it again",
		fileFlag(r), r.Path, fileFlag(r), r.Path)
}
