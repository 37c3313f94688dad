// Package local is the zero-setup, single-host storage backend: each image is
// a sparse file under a data directory, attached to a loop device and mounted
// under a mount root. Snapshots are sparse copies of the image file. It needs
// root (loop devices, mount) and util-linux and e2fsprogs on the host.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/vollock"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

var (
	_ storage.CRUD        = (*Backend)(nil)
	_ storage.Mounter     = (*Backend)(nil)
	_ storage.Snapshotter = (*Backend)(nil)
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout = 2 * time.Minute
)

// imageExt names image and snapshot files; it keeps stray files in the data
// directory from being listed as images.
const imageExt = ".img"

// Config configures a Backend.
type Config struct {
	// DataDir holds images/<policy>/<name>.img and
	// snapshots/<policy>/<name>/<snap>.img; it is created when needed.
	DataDir string
	// MountRoot is where volumes are mounted, as <MountRoot>/<policy>/<name>;
	// config.DefaultMountPath when empty.
	MountRoot string
	// Timeout bounds each external tool run; DefaultTimeout when zero.
	Timeout time.Duration
}

// Backend implements storage.CRUD, storage.Mounter and storage.Snapshotter
// with image files and loop devices. It is safe for concurrent use; calls on
// the same volume are serialised.
type Backend struct {
	dataDir   string
	mountRoot string
	timeout   time.Duration
	locks     vollock.Locker
}

// New checks cfg and returns a Backend. Directories are created on first use
// so that a Backend can be built (e.g. to list images) without root.
func New(cfg Config) (*Backend, error) {
	if cfg.DataDir == "" || !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("local backend: data dir %q must be an absolute path: %w", cfg.DataDir, config.ErrInvalid)
	}
	if cfg.MountRoot == "" {
		cfg.MountRoot = config.DefaultMountPath
	}
	if !filepath.IsAbs(cfg.MountRoot) {
		return nil, fmt.Errorf("local backend: mount root %q must be an absolute path: %w", cfg.MountRoot, config.ErrInvalid)
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("local backend: timeout %s is negative: %w", cfg.Timeout, config.ErrInvalid)
	}
	return &Backend{
		dataDir:   filepath.Clean(cfg.DataDir),
		mountRoot: filepath.Clean(cfg.MountRoot),
		timeout:   cfg.Timeout,
	}, nil
}

// paths are the files and directories of one volume.
type paths struct {
	image   string // <DataDir>/images/<policy>/<name>.img
	snapDir string // <DataDir>/snapshots/<policy>/<name>
	mount   string // <MountRoot>/<policy>/<name>
}

func (b *Backend) paths(policy, name string) (paths, error) {
	if err := config.ValidateName("policy", policy); err != nil {
		return paths{}, err
	}
	if err := config.ValidateName("volume", name); err != nil {
		return paths{}, err
	}
	var p paths
	var err error
	if p.image, err = under(filepath.Join(b.dataDir, "images"), policy, name+imageExt); err != nil {
		return paths{}, err
	}
	if p.snapDir, err = under(filepath.Join(b.dataDir, "snapshots"), policy, name); err != nil {
		return paths{}, err
	}
	if p.mount, err = under(b.mountRoot, policy, name); err != nil {
		return paths{}, err
	}
	return p, nil
}

// under joins elems to root and, as a second line of defence behind name
// validation, refuses a result outside root.
func under(root string, elems ...string) (string, error) {
	p := filepath.Join(append([]string{root}, elems...)...)
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q is not under %q: %w", p, root, config.ErrInvalid)
	}
	return p, nil
}

func volErr(op string, v storage.Volume, err error) error {
	return fmt.Errorf("%s %s/%s: %w", op, v.Policy, v.Name, err)
}

// Create makes a sparse image file of v.Size bytes.
func (b *Backend) Create(ctx context.Context, v storage.Volume) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if v.Size <= 0 {
		return volErr("create", v, fmt.Errorf("size %d must be positive: %w", v.Size, config.ErrInvalid))
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("create", v, err)
	}
	defer unlock()
	if err := createImage(p.image, v.Size); err != nil {
		return volErr("create", v, err)
	}
	return nil
}

// createImage creates path exclusively and sizes it without writing data.
// The file is made and sized under a temporary name and then linked into
// place, so a crash half-way never leaves an image of the wrong size.
func createImage(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("image %s: %w", path, storage.ErrExists)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("an image of %d bytes is larger than the data dir's filesystem allows: %w", size, storage.ErrUnsupported)
	}
	if err != nil {
		return err
	}
	// link(2) fails if path exists: still exclusive.
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("image %s: %w", path, storage.ErrExists)
	} else if err != nil {
		return err
	}
	return nil
}

// Destroy removes the image and its snapshots.
func (b *Backend) Destroy(ctx context.Context, v storage.Volume) error {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("destroy", v, err)
	}
	defer unlock()
	if err := b.checkIdle(ctx, p); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			// A destroy cut short between the image and its snapshots:
			// what is left of it goes now.
			_ = os.RemoveAll(p.snapDir)
			removeEmpty(filepath.Dir(p.snapDir))
		}
		return volErr("destroy", v, err)
	}
	if err := os.Remove(p.image); err != nil {
		return volErr("destroy", v, err)
	}
	if err := os.RemoveAll(p.snapDir); err != nil {
		return volErr("destroy", v, err)
	}
	removeEmpty(filepath.Dir(p.image), filepath.Dir(p.snapDir))
	return nil
}

// checkIdle returns nil if p's image exists, is not mounted at its mount
// path and is attached to no loop device; otherwise ErrNotFound or ErrInUse.
func (b *Backend) checkIdle(ctx context.Context, p paths) error {
	if err := statImage(p.image); err != nil {
		return err
	}
	m, err := fsutil.MountAt(p.mount)
	if err != nil {
		return err
	}
	if m != nil {
		return fmt.Errorf("mounted on %s: %w", p.mount, storage.ErrInUse)
	}
	// A loop device that is still attached may be mounted elsewhere or be
	// about to be; removing the file under it would leave a phantom device.
	devs, err := b.settledLoops(ctx, p.image)
	if err != nil {
		return err
	}
	if len(devs) > 0 {
		return fmt.Errorf("attached to %s: %w", strings.Join(devs, ", "), storage.ErrInUse)
	}
	return nil
}

// statImage returns storage.ErrNotFound for an absent image.
func statImage(path string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image %s: %w", path, storage.ErrNotFound)
	}
	return err
}

// removeEmpty removes per-policy directories left empty; one still in use
// (ENOTEMPTY) or already gone is fine.
func removeEmpty(dirs ...string) {
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// Exists reports whether v's image file exists.
func (b *Backend) Exists(ctx context.Context, v storage.Volume) (bool, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return false, fmt.Errorf("exists: %w", err)
	}
	switch err := statImage(p.image); {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, volErr("exists", v, err)
	}
}

// List returns every image under the data directory, sorted by policy and
// name. Files whose names are not valid volume names are skipped.
func (b *Backend) List(ctx context.Context) ([]storage.ID, error) {
	root := filepath.Join(b.dataDir, "images")
	policies, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var ids []storage.ID
	for _, pd := range policies {
		if !pd.IsDir() || config.ValidateName("policy", pd.Name()) != nil {
			continue
		}
		names, err := readNames(filepath.Join(root, pd.Name()))
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		for _, n := range names {
			ids = append(ids, storage.ID{Policy: pd.Name(), Name: n})
		}
	}
	return ids, nil
}

// readNames returns the sorted names of the valid <name>.img regular files
// in dir.
func readNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), imageExt)
		if !ok || !e.Type().IsRegular() || config.ValidateName("volume", n) != nil {
			continue
		}
		names = append(names, n)
	}
	// ReadDir sorts by file name, which the ".img" suffix can reorder
	// ("a-b.img" < "a.img" but "a" < "a-b").
	slices.Sort(names)
	return names, nil
}
