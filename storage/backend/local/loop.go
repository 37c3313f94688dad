package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage/internal/loopdev"
)

// loops returns the loop devices backed by image (by device and inode, so a
// symlinked data directory still matches; a device whose backing file was
// deleted is not image's, though its inode number may be). The image is a
// local file, so the kernel is asked directly (loopdev), with no losetup.
func (b *Backend) loops(_ context.Context, image string) ([]string, error) {
	return loopdev.Find(image)
}

// attach attaches image to a free loop device and returns the device.
func (b *Backend) attach(_ context.Context, image string) (string, error) {
	return loopdev.Attach(image)
}

// detach detaches a loop device. While something still has the device open
// the kernel only marks it to clear on last close; if that something is
// transient (udev probing it) detach waits a little for the device to go,
// so the image does not look attached right after an unmount. A device
// still mounted elsewhere (another "host" on the same machine) is left to
// clear when that mount goes.
func (b *Backend) detach(ctx context.Context, dev string) error {
	if err := loopdev.Detach(dev); err != nil {
		return err
	}
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	deadline := time.NewTimer(detachWait)
	defer deadline.Stop()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(backing); err != nil {
			return nil
		}
		bySource := func(m *mountinfo.Info) (skip, stop bool) { return m.Source != dev, false }
		if mounted, err := mountinfo.GetMounts(bySource); err == nil && len(mounted) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-t.C:
		}
	}
}

// settledLoops returns the loop devices still backed by image, waiting a
// little for ones being detached: while something (udev's blkid, say) still
// has a detached device open, the kernel only marks it to clear on last
// close.
func (b *Backend) settledLoops(ctx context.Context, image string) ([]string, error) {
	deadline := time.NewTimer(detachWait)
	defer deadline.Stop()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		devs, err := b.loops(ctx, image)
		if err != nil || len(devs) == 0 || !allDetaching(devs) {
			return devs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return devs, nil
		case <-t.C:
		}
	}
}

// allDetaching reports whether every device is marked to clear on last close.
func allDetaching(devs []string) bool {
	for _, d := range devs {
		b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d), "loop", "autoclear"))
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			return false
		}
	}
	return true
}

// detachWait bounds the wait for detached loop devices to clear.
const detachWait = 5 * time.Second

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
