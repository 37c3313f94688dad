//go:build cgo && pacific

package ceph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Create makes a new image of v.Size bytes with the configured features
// (DefaultFeatures unless Config or the volume's "features" option say
// otherwise); storage.ErrExists if it is there already.
func (b *Backend) Create(ctx context.Context, v storage.Volume) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if v.Size <= 0 || v.Size > config.MaxSize {
		return volErr("create", v, fmt.Errorf("size %d out of range: %w", v.Size, config.ErrInvalid))
	}
	opts, err := b.imageOptions(v)
	if err != nil {
		return volErr("create", v, err)
	}
	defer opts.Destroy()
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("create", v, err)
	}
	defer unlock()
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return volErr("create", v, err)
	}
	defer io.Destroy()
	if err := rbd.CreateImage(io, vl.image, uint64(v.Size), opts); err != nil {
		return volErr("create", v, fmt.Errorf("image %s: %w", vl.spec(), cephErr(err)))
	}
	return nil
}

// imageOptions are the creation options (format 2, features) of v's image;
// Destroy them when done.
func (b *Backend) imageOptions(v storage.Volume) (*rbd.ImageOptions, error) {
	names := b.cfg.features(v)
	for _, n := range names {
		if rbd.FeatureSetFromNames([]string{n}) == 0 {
			return nil, fmt.Errorf("unknown image feature %q: %w", n, config.ErrInvalid)
		}
	}
	opts := rbd.NewRbdImageOptions()
	err := errors.Join(
		opts.SetUint64(rbd.ImageOptionFormat, 2),
		opts.SetUint64(rbd.ImageOptionFeatures, uint64(rbd.FeatureSetFromNames(names))),
	)
	if err != nil {
		opts.Destroy()
		return nil, fmt.Errorf("image options: %w", err)
	}
	return opts, nil
}

// Exists reports whether v's image exists.
func (b *Backend) Exists(ctx context.Context, v storage.Volume) (bool, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return false, fmt.Errorf("exists: %w", err)
	}
	_, done, err := b.openVolume(ctx, vl, true)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, volErr("exists", v, err)
	}
	done()
	return true, nil
}

// List returns the volumes in the configured pools (Config.Pools), sorted by
// policy and name. Images whose names are not <policy>:<name> are not
// volumes and are skipped; a pool that does not exist holds none.
func (b *Backend) List(ctx context.Context) ([]storage.ID, error) {
	conn, err := b.conn(ctx, b.cfg.clientFor(storage.Volume{}))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var ids []storage.ID
	for _, p := range b.cfg.Pools {
		io, err := conn.OpenIOContext(p)
		if errors.Is(cephErr(err), storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list images: open pool %s: %w", p, cephErr(err))
		}
		names, err := rbd.GetImageNames(io)
		io.Destroy()
		if err != nil {
			return nil, fmt.Errorf("list images in %s: %w", p, cephErr(err))
		}
		for _, n := range names {
			if vid, ok := ParseImageName(n); ok {
				ids = append(ids, vid)
			}
		}
	}
	slices.SortFunc(ids, func(a, b storage.ID) int {
		return cmp.Or(strings.Compare(a.Policy, b.Policy), strings.Compare(a.Name, b.Name))
	})
	return slices.Compact(ids), nil
}

// Destroy removes v's image and all its snapshots. It refuses
// (storage.ErrInUse) while v is mounted here, while any client has the image
// open (mapped on any host) or holds its lock, and while a snapshot has
// clones; everything is checked before anything is removed. Use BreakLock
// first to destroy an image whose holder is dead.
func (b *Backend) Destroy(ctx context.Context, v storage.Volume) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("destroy", v, err)
	}
	defer unlock()
	if err := b.destroy(ctx, vl); err != nil {
		return volErr("destroy", v, err)
	}
	return nil
}

func (b *Backend) destroy(ctx context.Context, vl vol) error {
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return err
	}
	defer io.Destroy()
	img, protected, err := b.openIdle(ctx, io, vl)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			_ = img.Close()
		}
	}()
	if err := purgeSnapshots(ctx, img, vl.spec(), protected); err != nil {
		return err
	}
	closed = true
	if err := img.Close(); err != nil {
		return fmt.Errorf("close %s: %w", vl.spec(), cephErr(err))
	}
	if err := rbd.RemoveImage(io, vl.image); err != nil {
		return fmt.Errorf("remove %s: %w", vl.spec(), cephErr(err))
	}
	return nil
}

// openIdle opens vl's image read-write after checking that it may go: not
// mounted here, not open (mapped) or locked by any client, no snapshot
// with clones. It returns the image (Close it) and its snapshots, each
// with whether it is protected.
func (b *Backend) openIdle(ctx context.Context, io *rados.IOContext, vl vol) (*rbd.Image, map[string]bool, error) {
	if m, err := fsutil.MountAt(vl.mount); err != nil || m != nil {
		return nil, nil, errors.Join(err, fmt.Errorf("mounted on %s: %w", vl.mount, storage.ErrInUse))
	}
	conn, err := b.conn(ctx, vl.client)
	if err != nil {
		return nil, nil, err
	}
	img, err := openImage(io, vl, false)
	if err != nil {
		return nil, nil, err
	}
	hs, err := holders(conn, img)
	if err != nil {
		_ = img.Close()
		return nil, nil, fmt.Errorf("image %s: %w", vl.spec(), err)
	}
	if len(hs) > 0 {
		_ = img.Close()
		return nil, nil, fmt.Errorf("image %s is held by %s: %w", vl.spec(), describe(hs), storage.ErrInUse)
	}
	snaps, err := snapshotsWithoutClones(img, vl.spec(), func(snap string) ([]string, error) { return children(io, vl, snap) })
	if err != nil {
		_ = img.Close()
		return nil, nil, err
	}
	return img, snaps, nil
}

// snapshotsWithoutClones returns img's snapshots, each with whether it is
// protected, or ErrInUse if a protected one has clones (kids lists them).
func snapshotsWithoutClones(img *rbd.Image, spec string, kids func(snap string) ([]string, error)) (map[string]bool, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", spec, cephErr(err))
	}
	out := make(map[string]bool, len(snaps))
	for _, s := range snaps {
		p, err := img.GetSnapshot(s.Name).IsProtected()
		if err != nil {
			return nil, fmt.Errorf("snapshot %s@%s: %w", spec, s.Name, cephErr(err))
		}
		out[s.Name] = p
		if !p {
			continue
		}
		k, err := kids(s.Name)
		if err != nil {
			return nil, err
		}
		if len(k) > 0 {
			return nil, fmt.Errorf("snapshot %s@%s has clones %s: %w", spec, s.Name, strings.Join(k, ", "), storage.ErrInUse)
		}
	}
	return out, nil
}

// purgeSnapshots removes every snapshot of img (unprotecting the protected).
func purgeSnapshots(ctx context.Context, img *rbd.Image, spec string, snaps map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(snaps)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeSnapshot(img, name, snaps[name]); err != nil {
			return fmt.Errorf("snapshot %s@%s: %w", spec, name, err)
		}
	}
	return nil
}

// Resize grows v's image to size bytes. If v is mounted on this host the
// mapping is refreshed and the filesystem grown online (resize2fs, xfs_growfs);
// if it is only mapped here the mapping is refreshed. A volume mounted on
// another host has its filesystem grown by calling Resize again there (the
// image is then already at size and only the filesystem grows), as after any
// failed filesystem grow. Shrinking is storage.ErrUnsupported.
func (b *Backend) Resize(ctx context.Context, v storage.Volume, size int64) error {
	vl, err := b.resolve(v)
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
	if err := b.resize(ctx, vl, size); err != nil {
		return volErr("resize", v, err)
	}
	return nil
}

func (b *Backend) resize(ctx context.Context, vl vol, size int64) error {
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return err
	}
	defer io.Destroy()
	img, err := openImage(io, vl, false)
	if err != nil {
		return err
	}
	cur, err := img.GetSize()
	if err == nil && uint64(size) > cur {
		// With the lock held by the mapping client, librbd asks that
		// client to resize.
		err = img.Resize(uint64(size))
	}
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("resize %s: %w", vl.spec(), cephErr(err))
	}
	if uint64(size) < cur {
		return fmt.Errorf("shrink %s from %d to %d bytes: %w", vl.spec(), cur, size, storage.ErrUnsupported)
	}
	if err := b.growFilesystem(ctx, vl, size); err != nil {
		return fmt.Errorf("%w: %w", storage.ErrNotGrown, err)
	}
	return nil
}

// growFilesystem makes a mapping here, and the filesystem mounted from it,
// fill an image that already has its new size.
func (b *Backend) growFilesystem(ctx context.Context, vl vol, size int64) error {
	m, err := fsutil.MountAt(vl.mount)
	if err != nil {
		return err
	}
	mp, err := b.getMapper(ctx)
	if err != nil {
		if m == nil {
			return nil // nothing can be mapped here
		}
		return err
	}
	dev, err := mp.Device(ctx, vl.mapperImage())
	if err != nil || dev == "" {
		return err
	}
	if err := mp.Refresh(ctx, vl.mapperImage(), dev, size); err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	return fsutil.GrowOnline(ctx, b.host.timeout, m.FSType, dev, vl.mount)
}
