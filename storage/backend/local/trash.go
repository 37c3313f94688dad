package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

var _ storage.Trasher = (*Backend)(nil)

// The trash of the local backend keeps each removed image file, with its
// snapshot files, under <DataDir>/trash/<policy>/<name>/<handle>/ as
// image.img and snapshots/; the handle is a directory name made unique by
// the backend. Nothing is copied: files are renamed within the data
// directory. keep is not enforced here: the local backend never drops a
// trashed image on its own.

const (
	trashImage = "image.img"
	trashSnaps = "snapshots"
)

// trashDir returns the directory of one trash handle ("" for the parent of
// every handle of v).
func (b *Backend) trashDir(v storage.Volume, handle string) (string, error) {
	if _, err := b.paths(v.Policy, v.Name); err != nil {
		return "", err
	}
	root := filepath.Join(b.dataDir, "trash")
	if handle == "" {
		return under(root, v.Policy, v.Name)
	}
	if handle != filepath.Base(handle) || config.ValidateName("trash handle", handle) != nil {
		return "", fmt.Errorf("trash handle %q is not a plain name: %w", handle, config.ErrInvalid)
	}
	return under(root, v.Policy, v.Name, handle)
}

// Trash moves v's image file and snapshot directory into a new trash
// directory and returns its name. Refused like Destroy while the image is
// mounted or attached to a loop device.
func (b *Backend) Trash(ctx context.Context, v storage.Volume, keep time.Duration) (string, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return "", fmt.Errorf("trash: %w", err)
	}
	parent, err := b.trashDir(v, "")
	if err != nil {
		return "", fmt.Errorf("trash: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return "", volErr("trash", v, err)
	}
	defer unlock()
	if err := b.checkIdle(ctx, p); err != nil {
		return "", volErr("trash", v, err)
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", volErr("trash", v, err)
	}
	dir, err := os.MkdirTemp(parent, time.Now().UTC().Format("20060102T150405Z")+"-")
	if err != nil {
		return "", volErr("trash", v, err)
	}
	if err := os.Rename(p.image, filepath.Join(dir, trashImage)); err != nil {
		_ = os.Remove(dir)
		return "", volErr("trash", v, err)
	}
	if err := os.Rename(p.snapDir, filepath.Join(dir, trashSnaps)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Put the image back: nothing half in the trash.
		if rerr := os.Rename(filepath.Join(dir, trashImage), p.image); rerr != nil {
			err = errors.Join(err, fmt.Errorf("putting the image back: %w", rerr))
		} else {
			_ = os.Remove(dir)
		}
		return "", volErr("trash", v, err)
	}
	removeEmpty(filepath.Dir(p.image), filepath.Dir(p.snapDir))
	return filepath.Base(dir), nil
}

// Restore renames the trashed image (and its snapshots) back to v's name;
// storage.ErrExists if an image of that name exists.
func (b *Backend) Restore(ctx context.Context, v storage.Volume, handle string) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	dir, err := b.trashDir(v, handle)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("restore", v, err)
	}
	defer unlock()
	img := filepath.Join(dir, trashImage)
	if err := statImage(img); err != nil {
		return volErr("restore", v, fmt.Errorf("trash handle %s: %w", handle, err))
	}
	switch err := statImage(p.image); {
	case err == nil:
		return volErr("restore", v, fmt.Errorf("image %s: %w", p.image, storage.ErrExists))
	case !errors.Is(err, storage.ErrNotFound):
		return volErr("restore", v, err)
	}
	if _, err := os.Stat(p.snapDir); err == nil {
		return volErr("restore", v, fmt.Errorf("snapshot directory %s: %w", p.snapDir, storage.ErrExists))
	}
	for _, d := range []string{filepath.Dir(p.image), filepath.Dir(p.snapDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return volErr("restore", v, err)
		}
	}
	if err := os.Rename(filepath.Join(dir, trashSnaps), p.snapDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return volErr("restore", v, err)
	}
	if err := os.Rename(img, p.image); err != nil {
		if rerr := os.Rename(p.snapDir, filepath.Join(dir, trashSnaps)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("putting the snapshots back: %w", rerr))
		}
		return volErr("restore", v, err)
	}
	_ = os.Remove(dir)
	removeEmpty(filepath.Dir(dir), filepath.Dir(filepath.Dir(dir)))
	return nil
}

// Purge deletes a trashed image and its snapshots; storage.ErrNotFound if
// the handle is not there.
func (b *Backend) Purge(ctx context.Context, v storage.Volume, handle string) error {
	dir, err := b.trashDir(v, handle)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("purge", v, err)
	}
	defer unlock()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return volErr("purge", v, fmt.Errorf("trash handle %s: %w", handle, storage.ErrNotFound))
	} else if err != nil {
		return volErr("purge", v, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return volErr("purge", v, err)
	}
	removeEmpty(filepath.Dir(dir), filepath.Dir(filepath.Dir(dir)))
	return nil
}
