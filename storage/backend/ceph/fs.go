package ceph

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// host runs the filesystem tools that only this backend needs (growfs,
// fsfreeze) on a mapped device, each with a timeout; the shared steps
// (blkid, mkfs, mount, umount) are in storage/internal/fsutil, called with
// host.timeout.
type host struct {
	timeout time.Duration
}

func (h host) run(ctx context.Context, argv ...string) ([]byte, error) {
	return sysexec.Run(ctx, h.timeout, argv...)
}

// growOnline grows the filesystem mounted on path from dev to the device's
// size.
func (h host) growOnline(ctx context.Context, fsType, dev, path string) error {
	var argv []string
	switch fsType {
	case "ext2", "ext3", "ext4":
		argv = []string{"resize2fs", dev}
	case "xfs":
		argv = []string{"xfs_growfs", path}
	default:
		return fmt.Errorf("grow %s filesystem: %w", fsType, storage.ErrUnsupported)
	}
	if _, err := h.run(ctx, argv...); err != nil {
		return fmt.Errorf("grow filesystem: %w", err)
	}
	return nil
}

// frozen runs fn with the filesystem on path frozen, so that a snapshot taken
// meanwhile is consistent. The thaw runs even if ctx is cancelled.
func (h host) frozen(ctx context.Context, path string, fn func() error) (err error) {
	if _, err := h.run(ctx, "fsfreeze", "--freeze", path); err != nil {
		return fmt.Errorf("freeze %s: %w", path, err)
	}
	defer func() {
		if _, uerr := h.run(context.WithoutCancel(ctx), "fsfreeze", "--unfreeze", path); uerr != nil {
			err = errors.Join(err, fmt.Errorf("thaw %s: %w", path, uerr))
		}
	}()
	return fn()
}
