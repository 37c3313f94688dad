package local

import (
	"context"
	"fmt"
	"os"

	"github.com/moby/sys/mountinfo"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Resize grows v's image to size bytes, then its filesystem: online when
// mounted at its mount point here (resize2fs for ext2/3/4, xfs_growfs for
// xfs), offline on the image file for an unmounted ext2/3/4 unless
// v.Mounted says a host has it (that host grows it). An unmounted xfs cannot
// be grown (it grows at its next mount); calling Resize again with the same
// size while it is mounted grows it, as it does after any failed filesystem
// grow. Shrinking is storage.ErrUnsupported.
func (b *Backend) Resize(ctx context.Context, v storage.Volume, size int64) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	if size <= 0 || size > config.MaxSize {
		return volErr("resize", v, fmt.Errorf("size %d out of range: %w", size, config.ErrInvalid))
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("resize", v, err)
	}
	defer unlock()
	if err := b.resize(ctx, p, size, v.Mounted); err != nil {
		return volErr("resize", v, err)
	}
	return nil
}

func (b *Backend) resize(ctx context.Context, p paths, size int64, mounted bool) error {
	fi, err := os.Stat(p.image)
	if err != nil {
		return statImage(p.image)
	}
	if size < fi.Size() {
		return fmt.Errorf("shrink from %d to %d bytes: %w", fi.Size(), size, storage.ErrUnsupported)
	}
	m, err := fsutil.MountAt(p.mount)
	if err != nil {
		return err
	}
	devs, err := b.loops(ctx, p.image)
	if err != nil {
		return err
	}
	if m == nil && len(devs) > 0 && !mounted {
		// Mounted somewhere other than its mount point without the caller
		// knowing: neither an offline resize nor an online one through a
		// path we know is safe.
		elsewhere, err := mountedFrom(devs)
		if err != nil {
			return err
		}
		if elsewhere != "" {
			return fmt.Errorf("mounted on %s: %w", elsewhere, storage.ErrInUse)
		}
	}
	if size > fi.Size() {
		if err := os.Truncate(p.image, size); err != nil {
			return err
		}
	}
	if err := b.growFilesystem(ctx, p, devs, m, mounted); err != nil {
		return fmt.Errorf("%w: %w", storage.ErrNotGrown, err)
	}
	return nil
}

// growFilesystem makes the loop devices and the filesystem of an image that
// already has its new size fill it.
func (b *Backend) growFilesystem(ctx context.Context, p paths, devs []string, m *mountinfo.Info, mounted bool) error {
	for _, d := range devs {
		if err := b.refresh(ctx, d); err != nil {
			return err
		}
	}
	switch {
	case m != nil:
		return fsutil.GrowOnline(ctx, b.timeout, m.FSType, m.Source, p.mount)
	case mounted:
		// Mounted (or about to be) by a host that grows it online.
		return nil
	default:
		return b.growOffline(ctx, p.image)
	}
}

func (b *Backend) growOffline(ctx context.Context, image string) error {
	c, err := fsutil.Probe(ctx, b.timeout, image)
	if err != nil {
		return err
	}
	if !fsutil.IsExt(c.FSType) {
		// Blank images are formatted at their full size on first mount, xfs
		// grows at the next mount (storage.Volume.Grow).
		return nil
	}
	return fsutil.GrowExtOffline(ctx, b.timeout, image)
}
