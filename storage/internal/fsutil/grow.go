package fsutil

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// growSlack is how much smaller than its device a filesystem may be without
// being grown: resize2fs leaves a last partial block group too small for its
// own metadata unused (a grow of 1.5 MiB does nothing), and the check would
// then run again at every mount.
const growSlack = 16 << 20

// e2fsck -p exit statuses that mean the filesystem is now clean.
var e2fsckClean = []int{0, 1}

// IsExt reports whether fsType is one that resize2fs grows.
func IsExt(fsType string) bool {
	return fsType == "ext2" || fsType == "ext3" || fsType == "ext4"
}

// GrowExtOffline checks and grows the unmounted ext2/3/4 filesystem on dev
// (a device or an image file) to its full size: e2fsck -f -p, then
// resize2fs. It needs no CAP_SYS_RESOURCE, which an online grow does.
func GrowExtOffline(ctx context.Context, timeout time.Duration, dev string) error {
	// resize2fs refuses an unmounted filesystem not freshly checked.
	if _, err := sysexec.Run(ctx, timeout, "e2fsck", "-f", "-p", dev); err != nil && !slices.Contains(e2fsckClean, sysexec.ExitCode(err)) {
		return fmt.Errorf("check filesystem on %s: %w", dev, err)
	}
	if _, err := sysexec.Run(ctx, timeout, "resize2fs", dev); err != nil {
		return fmt.Errorf("grow filesystem on %s: %w", dev, err)
	}
	return nil
}

// GrowBeforeMount grows an ext2/3/4 filesystem on the block device dev to
// the device's size when it is smaller (the volume was resized while
// unmounted); other filesystems are left to GrowMounted.
func GrowBeforeMount(ctx context.Context, timeout time.Duration, dev, fsType string) error {
	if !IsExt(fsType) {
		return nil
	}
	out, err := sysexec.Run(ctx, timeout, "blockdev", "--getsize64", dev)
	if err != nil {
		return fmt.Errorf("size of %s: %w", dev, err)
	}
	devBytes, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return fmt.Errorf("size of %s: blockdev printed %q", dev, out)
	}
	fsBytes, err := extBytes(ctx, timeout, dev)
	if err != nil {
		return err
	}
	if devBytes-fsBytes < growSlack {
		return nil
	}
	return GrowExtOffline(ctx, timeout, dev)
}

var (
	blockCount = regexp.MustCompile(`(?m)^Block count:\s+(\d+)`)
	blockSize  = regexp.MustCompile(`(?m)^Block size:\s+(\d+)`)
)

// extBytes is the size of the ext2/3/4 filesystem on dev, from its
// superblock.
func extBytes(ctx context.Context, timeout time.Duration, dev string) (int64, error) {
	out, err := sysexec.Run(ctx, timeout, "dumpe2fs", "-h", dev)
	if err != nil {
		return 0, fmt.Errorf("read the superblock of %s: %w", dev, err)
	}
	c, s := blockCount.FindSubmatch(out), blockSize.FindSubmatch(out)
	if c == nil || s == nil {
		return 0, fmt.Errorf("dumpe2fs -h %s shows no block count and size", dev)
	}
	count, _ := strconv.ParseInt(string(c[1]), 10, 64)
	size, _ := strconv.ParseInt(string(s[1]), 10, 64)
	return count * size, nil
}

// GrowMounted grows a mounted xfs filesystem at path to its device (a no-op
// when it fills it already); xfs cannot grow unmounted. ext2/3/4 are grown
// before mounting (GrowBeforeMount).
func GrowMounted(ctx context.Context, timeout time.Duration, fsType, path string) error {
	if fsType != "xfs" {
		return nil
	}
	if _, err := sysexec.Run(ctx, timeout, "xfs_growfs", path); err != nil {
		return fmt.Errorf("grow filesystem at %s: %w", path, err)
	}
	return nil
}

// GrowOnline grows the filesystem mounted at path from dev to its device's
// size: resize2fs for ext2/3/4 (which needs CAP_SYS_RESOURCE), xfs_growfs
// for xfs.
func GrowOnline(ctx context.Context, timeout time.Duration, fsType, dev, path string) error {
	var argv []string
	switch {
	case IsExt(fsType):
		argv = []string{"resize2fs", dev}
	case fsType == "xfs":
		argv = []string{"xfs_growfs", path}
	default:
		return fmt.Errorf("grow %s filesystem: %w", fsType, storage.ErrUnsupported)
	}
	if _, err := sysexec.Run(ctx, timeout, argv...); err != nil {
		return fmt.Errorf("grow filesystem: %w", err)
	}
	return nil
}
