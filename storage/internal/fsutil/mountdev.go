package fsutil

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/volplugin/volplugin/storage"
	"golang.org/x/sys/unix"
)

// Undo is a stack of steps taking back what a multi-step set-up did.
type Undo []func(context.Context) error

// Push adds a step, run before the ones pushed earlier.
func (u *Undo) Push(step func(context.Context) error) { *u = append(*u, step) }

// Run runs the steps newest first when err is not nil, even if ctx was
// cancelled (each step has its own timeout), and returns err with their
// errors joined.
func (u Undo) Run(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	rctx := context.WithoutCancel(ctx)
	for i := len(u) - 1; i >= 0; i-- {
		if uerr := u[i](rctx); uerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", uerr))
		}
	}
	return err
}

// MountDevice is the host side of every block backend's Mount once v's
// device dev is attached: format it if (and only if) it is blank and v was
// never formatted (FormatIfBlank, with repair for the error of a damaged
// one), grow a resized v's filesystem before and after mounting, make the
// mount point path under root, and mount. Each step that leaves something
// behind pushes its undoing onto undo.
func MountDevice(ctx context.Context, timeout time.Duration, v storage.Volume, dev string, repair Repair, root, path string, undo *Undo) error {
	fsType, err := FormatIfBlank(ctx, timeout, v, dev, repair)
	if err != nil {
		return err
	}
	if v.Grow {
		if err := GrowBeforeMount(ctx, timeout, dev, fsType); err != nil {
			return err
		}
	}
	created, err := MkdirMount(root, path)
	if created != "" {
		undo.Push(func(context.Context) error { return RemoveDirs(path, created) })
	}
	if err != nil {
		return err
	}
	// A mount(8) killed by the timeout may have mounted all the same.
	undo.Push(func(ctx context.Context) error { return UnmountAll(ctx, timeout, path) })
	if err := Mount(ctx, timeout, fsType, dev, path, v.NoExec); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	if v.Grow {
		return GrowMounted(ctx, timeout, fsType, path)
	}
	return nil
}

// UnmountDevice is the host side of every block backend's Unmount: unmount
// path (everything stacked there) and mountedAt (where an adopted mount is,
// if elsewhere), release the device (detach the loop, unmap the image), and
// remove the mount point and then its policy directory if they are empty. A
// mount point someone wrote into while unmounted is left alone. Nothing
// mounted or attached is not an error.
func UnmountDevice(ctx context.Context, timeout time.Duration, path, mountedAt string, release func(context.Context) error) error {
	if err := UnmountAll(ctx, timeout, path); err != nil {
		return err
	}
	if err := UnmountAt(ctx, timeout, mountedAt, path); err != nil {
		return err
	}
	if err := release(ctx); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return err
	}
	_ = os.Remove(filepath.Dir(path)) // the policy directory, if now empty
	return nil
}
