package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/faultpoint"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// copyChunk bounds one kernel copy so that a cancelled ctx is noticed.
const copyChunk = 64 << 20

func (b *Backend) snapPath(p paths, snap string) (string, error) {
	if err := config.ValidateName("snapshot", snap); err != nil {
		return "", err
	}
	return under(p.snapDir, snap+imageExt)
}

// CreateSnapshot copies v's image to snapshot snap: a copy-on-write clone
// where the data directory's filesystem can make one (xfs with reflink,
// btrfs), else a copy of its data keeping holes. A volume mounted here is
// frozen for the clone or copy so the snapshot is consistent: milliseconds
// for a clone, as long as the data takes to copy otherwise (the answer says
// how long).
func (b *Backend) CreateSnapshot(ctx context.Context, v storage.Volume, snap string) (storage.SnapshotInfo, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return storage.SnapshotInfo{}, fmt.Errorf("create snapshot: %w", err)
	}
	sp, err := b.snapPath(p, snap)
	if err != nil {
		return storage.SnapshotInfo{}, volErr("create snapshot", v, err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return storage.SnapshotInfo{}, volErr("create snapshot", v, err)
	}
	defer unlock()
	info, err := b.createSnapshot(ctx, p, sp, v.Policy+"/"+v.Name)
	if err != nil {
		return info, volErr("create snapshot "+snap+" of", v, err)
	}
	return info, nil
}

func (b *Backend) createSnapshot(ctx context.Context, p paths, sp, subject string) (info storage.SnapshotInfo, err error) {
	if err := statImage(p.image); err != nil {
		return info, err
	}
	if _, err := os.Lstat(sp); err == nil {
		return info, fmt.Errorf("snapshot %s: %w", sp, storage.ErrExists)
	}
	if err := os.MkdirAll(p.snapDir, 0o700); err != nil {
		return info, err
	}
	m, err := fsutil.MountAt(p.mount)
	if err != nil {
		return info, err
	}
	copyImage := func() (err error) {
		info.Method, err = cloneOrCopy(ctx, p.image, sp)
		return err
	}
	if m == nil {
		return info, copyImage()
	}
	info.Frozen, err = fsutil.Frozen(ctx, b.timeout, p.mount, func() error {
		faultpoint.Hit(context.WithoutCancel(ctx), "local.snapshot.frozen", subject)
		return copyImage()
	})
	return info, err
}

// RemoveSnapshot removes snapshot snap of v.
func (b *Backend) RemoveSnapshot(ctx context.Context, v storage.Volume, snap string) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	sp, err := b.snapPath(p, snap)
	if err != nil {
		return volErr("remove snapshot", v, err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("remove snapshot", v, err)
	}
	defer unlock()
	if err := os.Remove(sp); errors.Is(err, fs.ErrNotExist) {
		return volErr("remove snapshot", v, fmt.Errorf("snapshot %s: %w", snap, storage.ErrNotFound))
	} else if err != nil {
		return volErr("remove snapshot", v, err)
	}
	removeEmpty(p.snapDir, filepath.Dir(p.snapDir))
	return nil
}

// ListSnapshots returns the names of v's snapshots, sorted;
// storage.ErrNotFound if v's image does not exist.
func (b *Backend) ListSnapshots(ctx context.Context, v storage.Volume) ([]string, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	names, err := readNames(p.snapDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := statImage(p.image); err != nil {
			return nil, volErr("list snapshots", v, err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, volErr("list snapshots", v, err)
	}
	return names, nil
}

// CopySnapshot creates image to as a sparse copy of snapshot snap of v; the
// new image has the snapshot's size, grown to to.Size if that is larger (a
// snapshot taken before the volume was resized: the filesystem follows at
// the copy's first mount).
func (b *Backend) CopySnapshot(ctx context.Context, v storage.Volume, snap string, to storage.Volume) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	sp, err := b.snapPath(p, snap)
	if err != nil {
		return volErr("copy snapshot", v, err)
	}
	tp, err := b.paths(to.Policy, to.Name)
	if err != nil {
		return volErr("copy snapshot", v, err)
	}
	unlock, err := b.locks.LockPair(ctx, id(v), id(to))
	if err != nil {
		return volErr("copy snapshot", v, err)
	}
	defer unlock()
	op := fmt.Sprintf("copy snapshot %s/%s@%s to", v.Policy, v.Name, snap)
	if _, err := os.Stat(sp); errors.Is(err, fs.ErrNotExist) {
		return volErr(op, to, fmt.Errorf("snapshot %s: %w", snap, storage.ErrNotFound))
	}
	if err := os.MkdirAll(filepath.Dir(tp.image), 0o700); err != nil {
		return volErr(op, to, err)
	}
	if err := sparseCopy(ctx, sp, tp.image); err != nil {
		return volErr(op, to, err)
	}
	if fi, err := os.Stat(tp.image); err == nil && fi.Size() < to.Size {
		if err := os.Truncate(tp.image, to.Size); err != nil {
			_ = os.Remove(tp.image)
			return volErr(op, to, err)
		}
	}
	return nil
}

// sparseCopy copies src to the new file dst (storage.ErrExists if it is
// there) as cloneOrCopy does.
func sparseCopy(ctx context.Context, src, dst string) error {
	_, err := cloneOrCopy(ctx, src, dst)
	return err
}

// cloneOrCopy makes the new file dst (storage.ErrExists if it is there) a
// copy of src and says how: a copy-on-write clone (FICLONE) where the
// filesystem has one, which takes milliseconds whatever the size; else a
// copy that skips src's holes, so that dst is as sparse as src, the kernel
// copying within data (copy_file_range). A partial dst is removed.
func cloneOrCopy(ctx context.Context, src, dst string) (method string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("%s: %w", dst, storage.ErrExists)
	}
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	// Any failure (EOPNOTSUPP on ext4 or tmpfs, EXDEV, EINVAL) leaves dst
	// empty: copy instead.
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return storage.SnapshotReflink, nil
	}
	return storage.SnapshotCopy, copyData(ctx, in, out, fi.Size())
}

// copyData copies the data of in (size bytes) to the empty out, skipping
// holes.
func copyData(ctx context.Context, in, out *os.File, size int64) error {
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := in.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := in.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		n := min(hole-data, copyChunk)
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, n); err != nil {
			return err
		}
		off = data + n
	}
	// A trailing hole is not copied; the size makes it.
	return out.Truncate(size)
}
