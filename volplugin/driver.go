// Package volplugin is the Docker volume plugin: one per Docker host, it
// maps and mounts volumes under mount locks that hang on the host's one etcd
// lease, all through volmaster (volplugin holds no etcd credentials).
package volplugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/iolimit"
	"github.com/volplugin/volplugin/internal/vollock"
	"github.com/volplugin/volplugin/storage"
)

// Config wires a Driver.
type Config struct {
	API  *client.Client
	Host string
	// Holder names this daemon in its host's locks (config.HolderID), so
	// that another daemon given the same host label cannot share them.
	// Empty only in tests of other parts.
	Holder string
	// Mounters maps a backend name to the Mounter for it on this host.
	Mounters map[string]storage.Mounter
	Log      *logrus.Logger
	// Maintenance refuses new mounts while existing ones keep their locks.
	Maintenance bool
	// Timeout bounds each Docker request's work (volmaster calls, map,
	// mkfs, mount); global Timeout is used if zero. watchGlobal replaces it
	// when the global Timeout changes.
	Timeout time.Duration
	// Limits applies rate limits to the containers using a device; nil
	// disables rate limiting.
	Limits *iolimit.Manager
	// Health sets the self-health thresholds.
	Health HealthLimits
}

// mounted is one volume mounted on this host.
type mounted struct {
	vol    config.Volume
	path   string
	device string
	ids    map[string]bool
	// lost is set when another host took the lock while this host's lease
	// was gone; the mount stays (a container uses it) but is reported.
	lost string
	// grownTo is the size the filesystem is known to fill: the size it was
	// mounted at, then each size an online grow reached. Empty for a mount
	// adopted after a restart (a resize may have happened meanwhile).
	grownTo string
	// lockLease is the host lease the lock was last confirmed on with every
	// ID; the lock keeper moves it when the lease changes (0: not yet).
	lockLease int64
}

// errRefused marks a mount this host declined to try (maintenance, self-health).
var errRefused = errors.New("refused")

// failsHealth tells whether a failed mount says something about this host's
// health: refusals, locks held elsewhere, missing volumes, bad names and a
// volume's own filesystem (damaged, or not the one asked for) do not.
func failsHealth(err error) bool {
	return err != nil && !errors.Is(err, errRefused) && !errors.Is(err, config.ErrInUse) &&
		!errors.Is(err, config.ErrNotFound) && !errors.Is(err, config.ErrInvalid) &&
		!errors.Is(err, config.ErrUnavailable) && !errors.Is(err, storage.ErrWrongFilesystem)
}

// lockBreaker is a backend that can fence a dead holder of a volume
// (break its lock and blocklist it so its late writes fail).
type lockBreaker interface {
	BreakLock(ctx context.Context, v storage.Volume, reason string) error
}

// Driver implements volume.Driver for Docker.
type Driver struct {
	cfg     Config
	log     *logrus.Logger
	lease   *hostLease
	vlock   vollock.Locker
	metrics *metrics
	started time.Time
	health  *health

	// state, if set, keeps mounts and queued releases across restarts.
	state *stateFile
	// keeperKick wakes the lock keeper (keepLocks).
	keeperKick chan struct{}

	mu     sync.Mutex
	mounts map[config.VolumeRef]*mounted
	// releases are lock releases volmaster has not acknowledged yet.
	releases []pendingRelease
	// global is the last global configuration read, saved with the state.
	global *config.Global
	// mountsChanged is signalled when a volume is mounted or unmounted, so
	// the runtime long poll starts again with the new set.
	mountsChanged chan struct{}
	// timeout is the current Timeout (nanoseconds), following the global
	// configuration.
	timeout atomic.Int64
	// logFloor is the log level at start (--debug): the global Debug only
	// adds to it.
	logFloor logrus.Level
}

var _ volume.Driver = (*Driver)(nil)

// New returns a driver; Run starts its host lease and recovery.
func New(cfg Config) (*Driver, error) {
	if cfg.API == nil {
		return nil, errors.New("volplugin: no volmaster client")
	}
	if err := config.ValidateName("host", cfg.Host); err != nil {
		return nil, fmt.Errorf("--host-label: %w", err)
	}
	if err := config.ValidateHolder(cfg.Holder); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.DefaultGlobal().TimeoutDuration()
	}
	d := &Driver{cfg: cfg, log: cfg.Log, mounts: map[config.VolumeRef]*mounted{}, started: time.Now(),
		mountsChanged: make(chan struct{}, 1), keeperKick: make(chan struct{}, 1)}
	d.timeout.Store(int64(cfg.Timeout))
	d.logFloor = cfg.Log.GetLevel()
	d.metrics = newMetrics(d)
	d.lease = newHostLease(cfg.API, cfg.Host, cfg.Holder, cfg.Log.WithField("host", cfg.Host), d.onNewLease)
	d.health = newHealth(cfg.Host, cfg.Health)
	d.lease.onRenewFailure = func() {
		d.metrics.renewFailures.Inc()
		d.health.renewFailed()
	}
	d.lease.onRenewed = d.health.renewed
	return d, nil
}

func (d *Driver) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.opTimeout())
}

// opTimeout bounds one Docker request's work.
func (d *Driver) opTimeout() time.Duration {
	return time.Duration(d.timeout.Load())
}

func parseName(name string) (config.VolumeRef, error) {
	ref, err := config.ParseVolumeRef(name)
	if err != nil {
		return config.VolumeRef{}, fmt.Errorf("volume name %q: use POLICY/NAME, e.g. policy1/data: %w", name, err)
	}
	return ref, nil
}

// Create creates the volume through volmaster; -o options override the
// policy (unknown options are an error).
func (d *Driver) Create(req *volume.CreateRequest) error {
	ref, err := parseName(req.Name)
	if err != nil {
		return err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	_, err = d.cfg.API.CreateVolume(ctx, config.VolumeRequest{Policy: ref.Policy, Name: ref.Name, Options: req.Options})
	if err != nil {
		return fmt.Errorf("create %s: %w", ref, err)
	}
	d.log.WithField("volume", ref.String()).Info("created")
	return nil
}

// Remove removes the volume through volmaster, which moves it to the trash
// (volcli volume trash restore brings it back) and refuses while it is
// mounted on any host, and a protected volume.
func (d *Driver) Remove(req *volume.RemoveRequest) error {
	ref, err := parseName(req.Name)
	if err != nil {
		return err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	// Never with Unprotect: a protected volume is refused, and the error
	// names the volcli command that removes it.
	e, err := d.cfg.API.RemoveVolume(ctx, ref, config.RemoveOptions{})
	if err != nil {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	if e != nil {
		d.log.WithField("volume", ref.String()).WithField("trash-id", e.ID).Info("moved to the trash")
		return nil
	}
	d.log.WithField("volume", ref.String()).Info("removed")
	return nil
}

func (d *Driver) mountpoint(ref config.VolumeRef) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m := d.mounts[ref]; m != nil {
		return m.path
	}
	return ""
}

// Get describes one volume; Mountpoint is set only while it is mounted here.
func (d *Driver) Get(req *volume.GetRequest) (*volume.GetResponse, error) {
	ref, err := parseName(req.Name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	v, err := d.cfg.API.Volume(ctx, ref)
	if err != nil {
		// Docker calls Get before every mount and unmount, also for a
		// volume a container on this host has mounted already. Without
		// volmaster (unreachable, timed out, 5xx) a second container must
		// still join such a mount and a stopping container's unmount must
		// still arrive (invariant 6), so this host answers for its own
		// mounts. A volume volmaster says is gone is not answered for.
		if !errors.Is(err, config.ErrNotFound) {
			if resp := d.getMounted(req.Name, ref); resp != nil {
				d.log.WithError(err).WithField("volume", ref.String()).Info("volmaster did not answer Get: answered from this host's mount")
				return resp, nil
			}
		}
		if errors.Is(err, config.ErrUnavailable) {
			// Not mounted here and volmaster away: if Get failed, Docker
			// would take the volume for none of ours and try to create it
			// with its local driver ("invalid characters"); said to exist,
			// the Mount that follows fails naming the real reason.
			d.log.WithError(err).WithField("volume", ref.String()).Info("volmaster did not answer Get: the volume is assumed to exist")
			return &volume.GetResponse{Volume: &volume.Volume{Name: req.Name,
				Status: map[string]any{"volmaster": "unreachable: " + err.Error()}}}, nil
		}
		return nil, err
	}
	status := volumeStatus(&v)
	if u, err := d.cfg.API.Use(ctx, ref); err == nil {
		status["locked-by"] = u.Hostname
		if u.Holder != "" {
			status["lock-holder"] = u.Holder
		}
		status["mounts"] = len(u.MountIDs)
	}
	return &volume.GetResponse{Volume: &volume.Volume{
		Name: req.Name, Mountpoint: d.mountpoint(ref), Status: status,
		CreatedAt: v.CreatedAt.Format(time.RFC3339),
	}}, nil
}

func volumeStatus(v *config.Volume) map[string]any {
	return map[string]any{
		"policy": v.Policy, "size": v.Create.Size, "filesystem": v.Create.Filesystem,
		"backend": v.Backends.Mount, "policy-revision": v.PolicyRevision,
	}
}

// getMounted answers Get from this host's mount of ref (nil if ref is not
// mounted here), saying that volmaster did not answer.
func (d *Driver) getMounted(name string, ref config.VolumeRef) *volume.GetResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.mounts[ref]
	if m == nil {
		return nil
	}
	status := volumeStatus(&m.vol)
	status["locked-by"] = d.cfg.Host
	status["mounts"] = len(m.ids)
	status["volmaster"] = "unavailable: answered from this host's mount"
	return &volume.GetResponse{Volume: &volume.Volume{
		Name: name, Mountpoint: m.path, Status: status,
		CreatedAt: m.vol.CreatedAt.Format(time.RFC3339),
	}}
}

// List lists every volume volmaster knows.
func (d *Driver) List() (*volume.ListResponse, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	refs, err := d.cfg.API.Volumes(ctx, "")
	if err != nil {
		return nil, err
	}
	out := &volume.ListResponse{Volumes: make([]*volume.Volume, 0, len(refs))}
	for _, ref := range refs {
		out.Volumes = append(out.Volumes, &volume.Volume{Name: ref.String(), Mountpoint: d.mountpoint(ref)})
	}
	return out, nil
}

// Path returns the mount point if the volume is mounted here.
func (d *Driver) Path(req *volume.PathRequest) (*volume.PathResponse, error) {
	ref, err := parseName(req.Name)
	if err != nil {
		return nil, err
	}
	return &volume.PathResponse{Mountpoint: d.mountpoint(ref)}, nil
}

// Capabilities: volumes are cluster-wide.
func (d *Driver) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "global"}}
}

func (d *Driver) mounter(v *config.Volume) (storage.Mounter, error) {
	m, ok := d.cfg.Mounters[v.Backends.Mount]
	if !ok {
		return nil, fmt.Errorf("backend %s is not available on host %s", v.Backends.Mount, d.cfg.Host)
	}
	return m, nil
}
