// Package ceph is the Ceph RBD storage backend. Control operations (create,
// resize, snapshots, clones, locks) go through librbd and librados by way of
// github.com/ceph/go-ceph; mapping an image to a block device goes through a
// mapper (package mapper: krbd, rbd-nbd or rbd-fuse + loop).
//
// # Image names
//
// Volume policy/name is the image <policy>:<name> in the volume's pool
// (ImageName). Policy and volume names match config.NamePattern, which has
// no ':', so the mapping is one-to-one: two volumes never share an image, a
// name like "a.b" needs no escaping, and List splits every image name back
// (images whose names do not split into two valid names are not ours and are
// skipped). Pools are separate namespaces; a volume's pool is fixed at
// creation.
//
// # Fencing
//
// A mapped image is held by the mapping client (the kernel client, rbd-nbd
// or rbd-fuse), which takes the image's managed exclusive lock; the client
// also holds a watch on the image header for as long as it has the image
// open. Mount refuses (storage.ErrInUse) an image that any other client
// watches or holds the lock of, so a second host cannot map a volume the
// first still has. The backend cannot tell a live owner from a dead one: the
// caller (volplugin, holding the etcd mount lock) decides that the previous
// owner's lease is gone and calls BreakLock, which blocklists every client
// holding the image, breaks the lock and waits until the cluster has dropped
// them. Late writes from the old owner then fail. A live owner's lock is
// never broken by Mount or Destroy.
//
// The lock is the cooperative librbd lock, not krbd's "exclusive" map
// option: control operations from other clients (a scheduled snapshot, a
// resize) must still be able to run while the image is mapped.
//
// # Building
//
// Files that use go-ceph build only with cgo and the "pacific" tag (the
// Ceph release of librbd on the build host; `make` passes it). Without them
// New returns an error and the rest of the repository still builds and vets.
package ceph

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
)

// Defaults for the zero values of Config.
const (
	DefaultRunDir          = "/run/volplugin/ceph"
	DefaultPool            = "rbd"
	DefaultTimeout         = 2 * time.Minute
	DefaultOpTimeout       = 30 * time.Second
	DefaultBlocklistExpiry = 24 * time.Hour
)

// DefaultFeatures returns the features of a new image when neither Config nor
// the volume's options name them. exclusive-lock is what fencing rests on;
// object-map and fast-diff (which need it) make snapshots, clones and
// flattening cheap; layering allows clones. krbd supports all of them from
// kernel 5.3.
func DefaultFeatures() []string {
	return []string{"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"}
}

// Volume option keys (the policy's driver options) the backend reads.
const (
	// OptConf, OptKeyring and OptUser choose the Ceph client for the
	// volume, overriding Config.Conf, Config.Keyring and Config.User.
	OptConf    = "conf"
	OptKeyring = "keyring"
	OptUser    = "user"
	// OptFeatures is a comma-separated image feature list for Create.
	OptFeatures = "features"
	// OptFlatten ("true") on the target of CopySnapshot flattens the copy,
	// so that it no longer depends on the source snapshot.
	OptFlatten = "flatten"
)

// Config configures a Backend.
type Config struct {
	// Conf, Keyring and User are the default Ceph client: the ceph.conf path
	// (empty: $CEPH_CONF or /etc/ceph/ceph.conf), a keyring path (empty: the
	// conf's) and the user without "client." (empty: admin). A volume's
	// options may override each.
	Conf, Keyring, User string
	// Host names this host in lock records; os.Hostname() when empty.
	Host string
	// Pools are scanned by List; DefaultPool when empty.
	Pools []string
	// MountRoot is where volumes are mounted, as <MountRoot>/<policy>/<name>;
	// config.DefaultMountPath when empty.
	MountRoot string
	// RunDir holds the fuse mapper's mount points and PID files;
	// DefaultRunDir when empty.
	RunDir string
	// Mapper is mapper.Auto (the default), KRBD, NBD or Fuse.
	Mapper string
	// MapperEnv replaces the mapper's view of the host (tests use a fake
	// sysfs and tools); its Timeout and RunDir are set from this Config.
	MapperEnv mapper.Env
	// Timeout bounds each external tool run; DefaultTimeout when zero.
	Timeout time.Duration
	// OpTimeout bounds every librados/librbd call (client_mount_timeout,
	// rados_mon_op_timeout, rados_osd_op_timeout); DefaultOpTimeout when
	// zero. go-ceph calls cannot be cancelled, so this, not the context,
	// ends one that hangs.
	OpTimeout time.Duration
	// BlocklistExpiry is how long BreakLock keeps a fenced client
	// blocklisted; DefaultBlocklistExpiry when zero.
	BlocklistExpiry time.Duration
	// Features of new images; DefaultFeatures() when empty.
	Features []string
}

// normalize fills defaults and checks cfg.
func (cfg Config) normalize() (Config, error) {
	if cfg.MountRoot == "" {
		cfg.MountRoot = config.DefaultMountPath
	}
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	for _, d := range []string{cfg.MountRoot, cfg.RunDir} {
		if !filepath.IsAbs(d) {
			return cfg, fmt.Errorf("ceph backend: %q must be an absolute path: %w", d, config.ErrInvalid)
		}
	}
	cfg.MountRoot, cfg.RunDir = filepath.Clean(cfg.MountRoot), filepath.Clean(cfg.RunDir)
	if len(cfg.Pools) == 0 {
		cfg.Pools = []string{DefaultPool}
	}
	for _, p := range cfg.Pools {
		if err := config.ValidateName("pool", p); err != nil {
			return cfg, fmt.Errorf("ceph backend: %w", err)
		}
	}
	if cfg.Mapper == "" {
		cfg.Mapper = mapper.Auto
	}
	for _, d := range []*time.Duration{&cfg.Timeout, &cfg.OpTimeout, &cfg.BlocklistExpiry} {
		if *d < 0 {
			return cfg, fmt.Errorf("ceph backend: negative duration %s: %w", *d, config.ErrInvalid)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.BlocklistExpiry == 0 {
		cfg.BlocklistExpiry = DefaultBlocklistExpiry
	}
	if len(cfg.Features) == 0 {
		cfg.Features = DefaultFeatures()
	}
	return cfg, nil
}

// ImageSeparator joins policy and volume name in an image name; it cannot
// occur in either.
const ImageSeparator = ":"

// ImageName is the RBD image name of volume policy/name. Both names must be
// valid (config.ValidateName).
func ImageName(policy, name string) (string, error) {
	if err := config.ValidateName("policy", policy); err != nil {
		return "", err
	}
	if err := config.ValidateName("volume", name); err != nil {
		return "", err
	}
	return policy + ImageSeparator + name, nil
}

// ParseImageName returns the volume an image name belongs to, and false for
// an image that is not a volplugin volume.
func ParseImageName(image string) (storage.ID, bool) {
	policy, name, ok := strings.Cut(image, ImageSeparator)
	if !ok || config.ValidateName("policy", policy) != nil || config.ValidateName("volume", name) != nil {
		return storage.ID{}, false
	}
	return storage.ID{Policy: policy, Name: name}, true
}

// pool is v's pool, DefaultPool when the volume names none.
func pool(v storage.Volume) (string, error) {
	if v.Pool == "" {
		return DefaultPool, nil
	}
	if err := config.ValidateName("pool", v.Pool); err != nil {
		return "", err
	}
	return v.Pool, nil
}

// client is a Ceph client identity; one connection is kept per client.
type client struct {
	conf, keyring, user string
}

// clientFor is v's client: its options over the backend's defaults.
func (cfg Config) clientFor(v storage.Volume) client {
	c := client{conf: cfg.Conf, keyring: cfg.Keyring, user: cfg.User}
	if s := v.Options[OptConf]; s != "" {
		c.conf = s
	}
	if s := v.Options[OptKeyring]; s != "" {
		c.keyring = s
	}
	if s := v.Options[OptUser]; s != "" {
		c.user = s
	}
	return c
}

// features is v's image feature list.
func (cfg Config) features(v storage.Volume) []string {
	if s := v.Options[OptFeatures]; s != "" {
		var out []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	return cfg.Features
}

func volErr(op string, v storage.Volume, err error) error {
	return fmt.Errorf("%s %s/%s: %w", op, v.Policy, v.Name, err)
}

func id(v storage.Volume) storage.ID { return storage.ID{Policy: v.Policy, Name: v.Name} }
