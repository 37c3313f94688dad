//go:build !(cgo && pacific)

package ceph

import (
	"context"
	"fmt"
	"time"

	"github.com/volplugin/volplugin/storage"
)

// errNoCeph: this binary was built without go-ceph (it needs cgo, librbd and
// the tag of the host's Ceph release, e.g. -tags pacific).
var errNoCeph = fmt.Errorf("ceph backend not built in (build with cgo and -tags pacific): %w", storage.ErrUnsupported)

// Backend is the Ceph backend; in this build every method fails with
// storage.ErrUnsupported.
type Backend struct{}

var (
	_ storage.CRUD        = (*Backend)(nil)
	_ storage.Mounter     = (*Backend)(nil)
	_ storage.Snapshotter = (*Backend)(nil)
)

// New fails: the backend is not built in.
func New(Config) (*Backend, error) { return nil, errNoCeph }

// Close does nothing.
func (*Backend) Close() error { return nil }

// MapperName fails.
func (*Backend) MapperName(context.Context) (string, error) { return "", errNoCeph }

// BreakLock fails.
func (*Backend) BreakLock(context.Context, storage.Volume, string) error { return errNoCeph }

// Create fails.
func (*Backend) Create(context.Context, storage.Volume) error { return errNoCeph }

// Destroy fails.
func (*Backend) Destroy(context.Context, storage.Volume) error { return errNoCeph }

// Exists fails.
func (*Backend) Exists(context.Context, storage.Volume) (bool, error) { return false, errNoCeph }

// List fails.
func (*Backend) List(context.Context) ([]storage.ID, error) { return nil, errNoCeph }

// Resize fails.
func (*Backend) Resize(context.Context, storage.Volume, int64) error { return errNoCeph }

// Mount fails.
func (*Backend) Mount(context.Context, storage.Volume) (storage.Mount, error) {
	return storage.Mount{}, errNoCeph
}

// Unmount fails.
func (*Backend) Unmount(context.Context, storage.Volume) error { return errNoCeph }

// Mounted fails.
func (*Backend) Mounted(context.Context) ([]storage.Mount, error) { return nil, errNoCeph }

// MountPath returns "".
func (*Backend) MountPath(storage.Volume) string { return "" }

// CreateSnapshot fails.
func (*Backend) CreateSnapshot(context.Context, storage.Volume, string) (storage.SnapshotInfo, error) {
	return storage.SnapshotInfo{}, errNoCeph
}

// RemoveSnapshot fails.
func (*Backend) RemoveSnapshot(context.Context, storage.Volume, string) error { return errNoCeph }

// ListSnapshots fails.
func (*Backend) ListSnapshots(context.Context, storage.Volume) ([]string, error) {
	return nil, errNoCeph
}

// CopySnapshot fails.
func (*Backend) CopySnapshot(context.Context, storage.Volume, string, storage.Volume) error {
	return errNoCeph
}

// Locate fails.
func (*Backend) Locate(context.Context, storage.Volume) (storage.Mount, bool, error) {
	return storage.Mount{}, false, errNoCeph
}

var _ storage.Trasher = (*Backend)(nil)

// Trash fails.
func (*Backend) Trash(context.Context, storage.Volume, time.Duration) (string, error) {
	return "", errNoCeph
}

// Restore fails.
func (*Backend) Restore(context.Context, storage.Volume, string) error { return errNoCeph }

// Purge fails.
func (*Backend) Purge(context.Context, storage.Volume, string) error { return errNoCeph }

// Capacity fails.
func (*Backend) Capacity(context.Context, storage.Volume) (storage.Capacity, error) {
	return storage.Capacity{}, errNoCeph
}
