// Package storage defines the interfaces volplugin's daemons use to create,
// mount and snapshot volumes, split by concern so that a backend provides only
// what it can (NFS mounts but cannot create). Backends live in
// storage/backend/*; they know nothing of etcd, HTTP or Docker.
//
// Every method takes a context and must return when it is done; backends run
// external tools with a timeout, so a hung tool is an error, not a hang.
package storage

import (
	"context"
	"errors"
	"time"

	"github.com/volplugin/volplugin/config"
)

// Sentinel errors returned by backends; check them with errors.Is. Each is
// a kind of one of config's sentinels (not found, already exists, in use,
// invalid), so a backend error keeps its kind up to the REST edge and in
// every daemon without being translated on the way.
var (
	// ErrNotFound: the image, snapshot or mount does not exist. A kind of
	// config.ErrNotFound.
	ErrNotFound error = config.Kind("not found", config.ErrNotFound)
	// ErrExists: the image or snapshot already exists. A kind of
	// config.ErrExists.
	ErrExists error = config.Kind("already exists", config.ErrExists)
	// ErrInUse: the image is mounted, mapped or locked and cannot be changed.
	// A kind of config.ErrInUse.
	ErrInUse error = config.Kind("in use", config.ErrInUse)
	// ErrWrongFilesystem: the device holds a filesystem other than the one
	// asked for; it is never reformatted. A kind of config.ErrInvalid.
	ErrWrongFilesystem error = config.Kind("device holds a different filesystem", config.ErrInvalid)
	// ErrUnsupported: the backend cannot do this (e.g. shrink, or snapshot
	// on NFS). A kind of config.ErrInvalid.
	ErrUnsupported error = config.Kind("not supported by this backend", config.ErrInvalid)
	// ErrDamaged: a volume formatted before (Volume.Formatted) holds no
	// filesystem blkid recognises, e.g. a damaged superblock. It is never
	// reformatted; the error names the repair command. A kind of
	// ErrWrongFilesystem.
	ErrDamaged error = config.Kind("filesystem not recognised on a formatted volume", ErrWrongFilesystem)
	// ErrNotBlank: a device about to be formatted for the first time holds
	// something blkid does not recognise (data in its first MiB, an ext or
	// xfs backup superblock): perhaps a damaged filesystem, so it is not
	// formatted. A kind of ErrWrongFilesystem.
	ErrNotBlank error = config.Kind("device is not blank", ErrWrongFilesystem)
	// ErrNotGrown: Resize grew the image to its new size but not its
	// filesystem (or not a mapping of it). Images never shrink, so the
	// caller records the new size; the filesystem grows at the next mount or
	// when Resize is called again with the same size.
	ErrNotGrown = errors.New("image grown, filesystem not grown")
)

// Volume is what a backend needs to know about one volume.
type Volume struct {
	Policy string
	Name   string
	// Image is the backend's name for the image when it is not the one it
	// derives from Policy and Name (config.Volume.Image); only the Ceph
	// backend has such images.
	Image string
	// Size in bytes; 0 for backends without a size.
	Size int64
	// Pool is the Ceph pool, empty elsewhere.
	Pool string
	// Options are backend options from the policy's driver section.
	Options map[string]string
	// Filesystem is the filesystem the volume should hold (ext4, xfs...).
	Filesystem string
	// Mkfs is the argv that formats a blank device; "%" is the device.
	Mkfs []string
	// Formatted is set once the volume's first mkfs has succeeded (the
	// record's formatted-at): Mount never formats it again, and refuses it
	// with ErrDamaged when its filesystem is not recognised.
	Formatted bool
	// NoExec mounts it noexec as well as nosuid,nodev (fsutil.MountOptions).
	NoExec bool
	// Grow is set for a volume that was resized: Mount grows its filesystem
	// to the device when it is smaller.
	Grow bool
	// MountedAt is where this host mounted v when that is not MountPath(v)
	// (a mount adopted after the mount root changed): Unmount unmounts it
	// there too.
	MountedAt string
	// Mounted tells Resize that a host has the volume mounted (it holds the
	// mount lock): the image grows, a mapping or mount on this host is
	// refreshed and grown, but the filesystem is never checked or grown
	// offline; the mounting host grows it.
	Mounted bool
}

// ID names an image a backend holds.
type ID struct {
	Policy string
	Name   string
}

// Mount describes a mounted volume.
type Mount struct {
	Volume ID
	// Device is the block device backing the mount (e.g. /dev/loop3).
	Device string
	// Path is the mount point.
	Path string
}

// CRUD creates and destroys images.
type CRUD interface {
	// Create makes a new image of v.Size bytes; ErrExists if it is there.
	Create(ctx context.Context, v Volume) error
	// Destroy removes the image and its snapshots; ErrNotFound if absent,
	// ErrInUse while it is mounted or mapped.
	Destroy(ctx context.Context, v Volume) error
	// Exists reports whether the image exists.
	Exists(ctx context.Context, v Volume) (bool, error)
	// List returns every image the backend holds.
	List(ctx context.Context) ([]ID, error)
	// Resize grows the image to size bytes (and a mounted filesystem with
	// it); shrinking is ErrUnsupported.
	Resize(ctx context.Context, v Volume, size int64) error
}

// Mounter makes images usable on this host.
type Mounter interface {
	// Mount maps the image, formats it if (and only if) it is blank and
	// was never formatted (fsutil.FormatIfBlank), and mounts it under the
	// mount root. Mounting a mounted volume returns the existing mount.
	Mount(ctx context.Context, v Volume) (Mount, error)
	// Unmount unmounts and unmaps; unmounting a volume that is not mounted
	// is not an error.
	Unmount(ctx context.Context, v Volume) error
	// Mounted lists the volumes this backend has mounted on this host.
	Mounted(ctx context.Context) ([]Mount, error)
	// Locate finds where v's device (image, loop or mapped device, export)
	// is mounted on this host, under any path: a mount made under an
	// earlier mount root is still found. ok is false when it is mounted
	// nowhere.
	Locate(ctx context.Context, v Volume) (m Mount, ok bool, err error)
	// MountPath is where v is (or would be) mounted.
	MountPath(v Volume) string
}

// SnapshotInfo says how a snapshot was taken.
type SnapshotInfo struct {
	// Method is SnapshotNative (the backend's own snapshot), SnapshotReflink
	// (a copy-on-write clone of the image file) or SnapshotCopy (a copy of
	// its data, as long as the data is big).
	Method string
	// Frozen is how long the filesystem of a volume mounted on this host was
	// frozen (writers held) for the snapshot; 0 if it was not mounted here.
	Frozen time.Duration
}

// Snapshot methods (SnapshotInfo.Method).
const (
	SnapshotNative  = "native"
	SnapshotReflink = "reflink"
	SnapshotCopy    = "copy"
)

// Snapshotter keeps point-in-time copies of images.
type Snapshotter interface {
	// CreateSnapshot takes snapshot snap of v and says how; ErrExists if
	// taken already.
	CreateSnapshot(ctx context.Context, v Volume, snap string) (SnapshotInfo, error)
	// RemoveSnapshot removes snap; ErrNotFound if absent.
	RemoveSnapshot(ctx context.Context, v Volume, snap string) error
	// ListSnapshots returns v's snapshot names, sorted.
	ListSnapshots(ctx context.Context, v Volume) ([]string, error)
	// CopySnapshot creates the new image to from snapshot snap of v.
	CopySnapshot(ctx context.Context, v Volume, snap string, to Volume) error
}

// Trasher keeps removed images restorable. A CRUD backend that implements
// it gets removed volumes moved to its trash instead of destroyed; each
// trashed image is named by the handle Trash returns.
type Trasher interface {
	// Trash moves v's image and its snapshots out of the way (v's name is
	// free at once for a new image) and returns its handle. keep is how
	// long the backend should refuse to drop it on its own (rbd trash
	// deferment). The checks are Destroy's: ErrNotFound if absent, ErrInUse
	// while mounted, mapped or a snapshot has clones.
	Trash(ctx context.Context, v Volume, keep time.Duration) (handle string, err error)
	// Restore moves the trashed image back under v's name, with its
	// snapshots; ErrExists if an image of that name exists, ErrNotFound if
	// the handle is not in the trash.
	Restore(ctx context.Context, v Volume, handle string) error
	// Purge destroys the trashed image and its snapshots; ErrNotFound if
	// the handle is not in the trash (purged already).
	Purge(ctx context.Context, v Volume, handle string) error
}

// Capacity is the free space a CapacityReporter sees for a volume's images.
type Capacity struct {
	// Store names the space counted (a directory's filesystem, a Ceph
	// pool): volumes with the same Store draw on the same bytes, so a sum
	// over several counts each Store once.
	Store string
	// Available is how many bytes new images may still be given. Images
	// are thin (sparse files, RBD), so it is space not yet written, not
	// the sizes still to promise.
	Available int64
}

// CapacityReporter is a CRUD backend that can tell how much space is left
// for new images. It is optional: a backend without it cannot tell.
type CapacityReporter interface {
	// Capacity reports the space left where images of v (its pool,
	// client and options; name and size are not needed) are created.
	Capacity(ctx context.Context, v Volume) (Capacity, error)
}
