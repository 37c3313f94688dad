package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// loops returns the loop devices backed by image. losetup matches the backing
// file by device and inode, so a symlinked data directory still matches.
func (b *Backend) loops(ctx context.Context, image string) ([]string, error) {
	out, err := sysexec.Run(ctx, b.timeout, "losetup", "--list", "--noheadings", "--output", "NAME", "--associated", image)
	if err != nil {
		return nil, fmt.Errorf("find loop devices: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// attach attaches image to a free loop device and returns the device.
func (b *Backend) attach(ctx context.Context, image string) (string, error) {
	out, err := sysexec.Run(ctx, b.timeout, "losetup", "--find", "--show", image)
	if err != nil {
		return "", fmt.Errorf("attach loop device: %w", err)
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("attach loop device: losetup printed %q, not a device", dev)
	}
	return dev, nil
}

// detach detaches a loop device and waits until it is gone: while something
// (udev's blkid, say) still has it open, the kernel only marks it to clear
// on last close, and the image would still look attached.
func (b *Backend) detach(ctx context.Context, dev string) error {
	if _, err := sysexec.Run(ctx, b.timeout, "losetup", "--detach", dev); err != nil {
		return fmt.Errorf("detach loop device: %w", err)
	}
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	ctx, cancel := context.WithTimeout(ctx, detachWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(backing); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loop device %s still attached %s after detach: %w", dev, detachWait, storage.ErrInUse)
		case <-t.C:
		}
	}
}

// detachWait bounds the wait for a detached loop device to clear.
const detachWait = 10 * time.Second

// detachAll detaches every loop device backed by image.
func (b *Backend) detachAll(ctx context.Context, image string) error {
	devs, err := b.loops(ctx, image)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range devs {
		errs = append(errs, b.detach(ctx, d))
	}
	return errors.Join(errs...)
}

// refresh makes a loop device pick up its backing file's new size.
func (b *Backend) refresh(ctx context.Context, dev string) error {
	if _, err := sysexec.Run(ctx, b.timeout, "losetup", "--set-capacity", dev); err != nil {
		return fmt.Errorf("refresh loop device size: %w", err)
	}
	return nil
}
