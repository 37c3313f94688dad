//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/vollock"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
)

var (
	_ storage.CRUD        = (*Backend)(nil)
	_ storage.Mounter     = (*Backend)(nil)
	_ storage.Snapshotter = (*Backend)(nil)
)

// Backend implements storage.CRUD, storage.Mounter and storage.Snapshotter on
// Ceph RBD. It connects lazily, one connection per Ceph client identity (the
// backend's default and any a volume's options name), and keeps them until
// Close. It is safe for concurrent use; calls on the same volume are
// serialised within the process.
type Backend struct {
	cfg   Config
	host  host
	locks vollock.Locker

	mu     sync.Mutex
	closed bool
	conns  map[client]*rados.Conn
	mapper mapper.Mapper // chosen on first use: detection may load modules
}

// New checks cfg and returns a Backend. It does not connect: the first call
// that needs the cluster does.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		if cfg.Host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("ceph backend: host name: %w", err)
		}
	}
	return &Backend{cfg: cfg, host: host{timeout: cfg.Timeout}, conns: map[client]*rados.Conn{}}, nil
}

// Close shuts every cluster connection down. Mappings and mounts stay: they
// belong to the host, not to this process. Calls after Close fail.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c, conn := range b.conns {
		conn.Shutdown()
		delete(b.conns, c)
	}
	return nil
}

var errClosed = errors.New("ceph backend is closed")

// conn returns the connection of client c, connecting on first use.
func (b *Backend) conn(ctx context.Context, c client) (*rados.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if conn := b.conns[c]; conn != nil {
		return conn, nil
	}
	conn, err := b.connect(c)
	if err != nil {
		return nil, fmt.Errorf("connect to ceph as %q: %w: %w", c.user, config.ErrUnavailable, err)
	}
	b.conns[c] = conn
	return conn, nil
}

func (b *Backend) connect(c client) (*rados.Conn, error) {
	var conn *rados.Conn
	var err error
	if c.user != "" {
		conn, err = rados.NewConnWithUser(c.user)
	} else {
		conn, err = rados.NewConn()
	}
	if err != nil {
		return nil, err
	}
	if c.conf != "" {
		err = conn.ReadConfigFile(c.conf)
	} else {
		err = conn.ReadDefaultConfigFile()
	}
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("read ceph config %q: %w", c.conf, err)
	}
	secs := strconv.Itoa(max(1, int(b.cfg.OpTimeout.Seconds())))
	opts := [][2]string{
		// Without these a call with no reachable mon or OSD blocks for 300 s
		// (or forever): go-ceph calls cannot be cancelled by a context.
		{"client_mount_timeout", secs},
		{"rados_mon_op_timeout", secs},
		{"rados_osd_op_timeout", secs},
	}
	if c.keyring != "" {
		opts = append(opts, [2]string{"keyring", c.keyring})
	}
	for _, o := range opts {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("set %s: %w", o[0], err)
		}
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, err
	}
	return conn, nil
}

// getMapper returns the mapper, choosing it on first use.
func (b *Backend) getMapper(ctx context.Context) (mapper.Mapper, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mapper != nil {
		return b.mapper, nil
	}
	env := b.cfg.MapperEnv
	env.Timeout, env.RunDir = b.cfg.Timeout, b.cfg.RunDir
	m, err := mapper.New(ctx, b.cfg.Mapper, env)
	if err != nil {
		return nil, err
	}
	b.mapper = m
	return m, nil
}

// MapperName is the mapper in use (detecting it if need be).
func (b *Backend) MapperName(ctx context.Context) (string, error) {
	m, err := b.getMapper(ctx)
	if err != nil {
		return "", err
	}
	return m.Name(), nil
}

// vol is a resolved volume: its names, where it lives and who connects.
type vol struct {
	storage.Volume
	pool   string
	image  string
	mount  string // <MountRoot>/<policy>/<name>
	client client
}

func (b *Backend) resolve(v storage.Volume) (vol, error) {
	image, err := ImageName(v.Policy, v.Name)
	if err != nil {
		return vol{}, err
	}
	if v.Image != "" {
		// An adopted image keeps its own name (storage.Volume.Image).
		if err := config.ValidateName("image", v.Image); err != nil {
			return vol{}, err
		}
		image = v.Image
	}
	p, err := pool(v)
	if err != nil {
		return vol{}, err
	}
	return vol{
		Volume: v,
		pool:   p,
		image:  image,
		// Both names are single path elements (ImageName checked them).
		mount:  filepath.Join(b.cfg.MountRoot, v.Policy, v.Name),
		client: b.cfg.clientFor(v),
	}, nil
}

func (vl vol) spec() string { return vl.pool + "/" + vl.image }

func (vl vol) mapperImage() mapper.Image {
	return mapper.Image{Pool: vl.pool, Name: vl.image, Conf: vl.client.conf, Keyring: vl.client.keyring, User: vl.client.user}
}

// ioctx opens vl's pool on its client's connection; Destroy it when done.
func (b *Backend) ioctx(ctx context.Context, vl vol) (*rados.IOContext, error) {
	conn, err := b.conn(ctx, vl.client)
	if err != nil {
		return nil, err
	}
	io, err := conn.OpenIOContext(vl.pool)
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", vl.pool, cephErr(err))
	}
	return io, nil
}

// openImage opens vl's image read-write (needed for snapshots, resize,
// locks); readOnly opens register no watch and take no lock.
func openImage(io *rados.IOContext, vl vol, readOnly bool) (*rbd.Image, error) {
	var img *rbd.Image
	var err error
	if readOnly {
		img, err = rbd.OpenImageReadOnly(io, vl.image, rbd.NoSnapshot)
	} else {
		img, err = rbd.OpenImage(io, vl.image, rbd.NoSnapshot)
	}
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", vl.spec(), cephErr(err))
	}
	return img, nil
}

// openVolume opens vl's image (see openImage) in its pool and returns it
// with the function that closes both again.
func (b *Backend) openVolume(ctx context.Context, vl vol, readOnly bool) (*rbd.Image, func(), error) {
	io, err := b.ioctx(ctx, vl)
	if err != nil {
		return nil, nil, err
	}
	img, err := openImage(io, vl, readOnly)
	if err != nil {
		io.Destroy()
		return nil, nil, err
	}
	return img, func() {
		_ = img.Close()
		io.Destroy()
	}, nil
}

// errno returns the (positive) errno a go-ceph error carries, or 0.
func errno(err error) syscall.Errno {
	var ce interface{ ErrorCode() int }
	if errors.As(err, &ce) {
		return syscall.Errno(max(ce.ErrorCode(), -ce.ErrorCode()))
	}
	if errors.Is(err, rbd.ErrNotFound) {
		return syscall.ENOENT
	}
	return 0
}

// cephErr adds the storage sentinel matching a go-ceph error's errno.
func cephErr(err error) error {
	if err == nil {
		return nil
	}
	switch errno(err) {
	case syscall.ENOENT:
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case syscall.EEXIST:
		return fmt.Errorf("%w: %w", storage.ErrExists, err)
	case syscall.EBUSY, syscall.EROFS, syscall.ENOTEMPTY:
		// EROFS: another client holds the exclusive lock; ENOTEMPTY: an
		// image with snapshots or clones.
		return fmt.Errorf("%w: %w", storage.ErrInUse, err)
	case syscall.ETIMEDOUT:
		return fmt.Errorf("%w: %w", config.ErrUnavailable, err)
	}
	return err
}
