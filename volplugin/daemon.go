package volplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/bearer"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/diag"
	"github.com/volplugin/volplugin/internal/iolimit"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/storage/backend/nfs"
)

// healthEvery is how often self-health is re-checked (and webhook sent).
const healthEvery = 10 * time.Second

// limitScan is how often containers that started using a mounted volume are
// looked for, to give them the volume's rate limits.
const limitScan = 2 * time.Second

// Options are volplugin's command-line settings.
type Options struct {
	// Volmaster is one volmaster URL or several, comma-separated: volmasters
	// of one cluster, tried in turn when one is down (client.New).
	Volmaster string
	// Insecure allows plain HTTP to a volmaster beyond loopback: its token
	// and every answer it trusts (mkfs commands, mount options) would cross
	// the network readable and forgeable.
	Insecure   bool
	PluginName string
	SocketDir  string
	// SocketGroup owns the socket (mode 0660): a group name or ID.
	SocketGroup string
	Host        string
	// MountRoot is where volumes are mounted; empty: global MountPath.
	MountRoot string
	// StateDir holds the state file that keeps mounts, their Docker mount
	// IDs and queued lock releases across restarts (DefaultStateDir if
	// empty).
	StateDir string
	// LocalDataDir is the local backend's data dir; it must be the one
	// volmaster creates images in (volmaster's --data-dir + "/local").
	LocalDataDir string
	Maintenance  bool
	// Health sets the self-health thresholds and webhook.
	Health HealthLimits
	// CephConf, if set, enables the Ceph backend (CephMapper: auto, krbd,
	// nbd or fuse).
	CephConf, CephMapper string
	// CephRunDir holds the fuse mapper's mount points and PID files.
	CephRunDir string
	// TokenFile holds the bearer token (a host-role token) for a volmaster
	// run with --auth.
	TokenFile string
	// TLSCA, TLSCert and TLSKey configure TLS to volmaster (https URL).
	TLSCA, TLSCert, TLSKey string
	// MetricsListen is the loopback address of GET /metrics ("" for none).
	MetricsListen string
	// MetricsTokenFile, if set, holds the bearer token GET /metrics
	// requires: without it any local user reads the metrics.
	MetricsTokenFile string
	Log              *logrus.Logger
	// MetricsStarted, if set, is called with the metrics URL.
	MetricsStarted func(url string)
	// Started, if set, is called with the socket path once it listens.
	Started func(socket string)
}

// Serve runs volplugin until ctx ends, then removes its socket.
func Serve(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if err := config.ValidateName("plugin", o.PluginName); err != nil {
		return fmt.Errorf("--plugin-name: %w", err)
	}
	gid, err := groupID(o.SocketGroup)
	if err != nil {
		return err
	}
	sock := filepath.Join(o.SocketDir, o.PluginName+".sock")
	d, stop, err := start(ctx, o, func() error { return checkSocketFree(sock) })
	if err != nil {
		return err
	}
	defer stop()
	ln, err := listenUnix(sock, gid)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	h := volume.NewHandler(d)
	h.HandleFunc("/info", d.serveInfo)
	h.HandleFunc("/healthz", d.health.serveHealthz)
	o.Log.WithFields(logrus.Fields{"socket": sock, "host": o.Host, "volmaster": o.Volmaster}).Info("volplugin listening")
	if o.Started != nil {
		o.Started(sock)
	}
	errc := make(chan error, 1)
	go func() { errc <- h.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve plugin socket: %w", err)
	case <-ctx.Done():
		_ = ln.Close()
		return nil
	}
}

// Start runs a volplugin host without the Docker socket, for another
// front-end (volcsi's node service) to mount through: the host lease, the
// lock keeper, recovery of what the state file and mount table show, rate
// limits and metrics, until ctx ends. o.PluginName names the state file and
// the one-instance lock, so a front-end beside volplugin on one host needs
// its own name. stop releases what Start holds once ctx has ended.
func Start(ctx context.Context, o Options) (d *Driver, stop func(), err error) {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if err := config.ValidateName("plugin", o.PluginName); err != nil {
		return nil, nil, fmt.Errorf("--plugin-name: %w", err)
	}
	return start(ctx, o, nil)
}

// start is Start; beforeLoad, if set, runs under the instance lock before
// the state file is read (Serve refuses a live socket there).
func start(ctx context.Context, o Options, beforeLoad func() error) (d *Driver, stop func(), err error) {
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	api, err := NewClient(o)
	if err != nil {
		return nil, nil, err
	}
	state, err := newStateFile(o.StateDir, o.PluginName)
	if err != nil {
		return nil, nil, err
	}
	// Before the state file is read or a mount touched: a second volplugin
	// on this host must stop here, not after it adopted the first one's
	// mounts or replaced the socket Docker talks to.
	inst, err := lockInstance(filepath.Dir(state.path), o.PluginName)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, inst.release)
	if beforeLoad != nil {
		if err := beforeLoad(); err != nil {
			return nil, nil, err
		}
	}
	st, err := state.load()
	if err != nil {
		return nil, nil, err
	}
	g, fresh := startGlobal(ctx, api, st, o.Log)
	if o.MountRoot == "" {
		o.MountRoot = g.MountPath
	}
	lb, err := local.New(local.Config{DataDir: o.LocalDataDir, MountRoot: o.MountRoot, Timeout: g.TimeoutDuration()})
	if err != nil {
		return nil, nil, err
	}
	nb, err := nfs.New(nfs.Config{MountRoot: o.MountRoot, Timeout: g.TimeoutDuration()})
	if err != nil {
		return nil, nil, err
	}
	mounters := map[string]storage.Mounter{config.BackendLocal: lb, config.BackendNFS: nb}
	if o.CephConf != "" {
		cb, err := ceph.New(ceph.Config{Conf: o.CephConf, Host: o.Host, MountRoot: o.MountRoot, Mapper: o.CephMapper, RunDir: o.CephRunDir, Timeout: g.TimeoutDuration()})
		if err != nil {
			return nil, nil, fmt.Errorf("--ceph-conf: %w", err)
		}
		closers = append(closers, func() { cb.Close() })
		mounters[config.BackendCeph] = cb
	}
	limits := iolimit.NewManager(iolimit.Options{Logf: o.Log.Warnf})
	d, err = New(Config{
		API: api, Host: o.Host, Holder: config.HolderID(o.PluginName, filepath.Dir(state.path)), Log: o.Log, Maintenance: o.Maintenance, Timeout: g.TimeoutDuration(),
		Mounters: mounters, Limits: limits, Health: o.Health,
	})
	if err != nil {
		return nil, nil, err
	}
	d.state = state
	if fresh {
		d.global = &g
	}
	// What is mounted is known from the state file and the mount table
	// alone; volmaster's part of recovery goes on in the background if it
	// is away, so Docker finds the plugin and running containers keep their
	// volumes. New mounts need volmaster and say so.
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	d.recoverLocal(rctx, st)
	rcancel()
	d.saveState(o.Log)
	if fresh {
		rctx, rcancel = context.WithTimeout(ctx, time.Minute)
		err = d.recoverRemote(rctx)
		rcancel()
	} else {
		err = config.ErrUnavailable
	}
	if err != nil {
		go d.recoverInBackground(ctx)
	} else {
		d.saveState(o.Log)
	}
	if o.MetricsListen != "" {
		tok, err := bearer.FromFile(o.MetricsTokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--metrics-token-file: %w", err)
		}
		ln, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return nil, nil, fmt.Errorf("--metrics-listen %s: %w", o.MetricsListen, err)
		}
		hs := &http.Server{Handler: bearer.Require(tok, d.metrics.handler()), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		closers = append(closers, func() { hs.Close() })
		if o.MetricsStarted != nil {
			o.MetricsStarted("http://" + ln.Addr().String() + "/metrics")
		}
	}
	go d.lease.Run(ctx)
	go d.keepLocks(ctx)
	go limits.Run(ctx, limitScan)
	go d.watchRuntime(ctx)
	go d.watchGlobal(ctx, globalPoll)
	go d.health.run(ctx, healthEvery, o.Log.Warnf)

	return d, release, nil
}

// NewClient is the volmaster client o describes (URL, TLS, token file),
// refusing plain HTTP beyond loopback unless o.Insecure.
func NewClient(o Options) (*client.Client, error) {
	if err := checkVolmasterURL(o.Volmaster, o.Insecure); err != nil {
		return nil, err
	}
	var copts []client.Option
	if o.TLSCA != "" || o.TLSCert != "" || o.TLSKey != "" {
		cfg, err := client.TLSConfig(o.TLSCA, o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, err
		}
		copts = append(copts, client.WithTLS(cfg))
	}
	if o.TokenFile != "" {
		tok, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		copts = append(copts, client.WithToken(strings.TrimSpace(string(tok))))
	}
	api, err := client.New(o.Volmaster, copts...)
	if err != nil {
		return nil, err
	}
	return api, nil
}

// listenUnix replaces a stale socket (checkSocketFree has refused a live
// one) and listens with mode 0660, owned by
// root and group gid (-1 keeps the process's group).
func listenUnix(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chown %s to group %d: %w", path, gid, err)
		}
	}
	return ln, nil
}

// groupID resolves --socket-group (a name or a number); "" is -1.
func groupID(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(group); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("--socket-group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// Info is what GET /info on the plugin socket reports.
type Info struct {
	Process     diag.Process `json:"process"`
	Health      Health       `json:"health"`
	Host        string       `json:"host"`
	Holder      string       `json:"holder,omitempty"`
	Maintenance bool         `json:"maintenance"`
	Lease       LeaseInfo    `json:"lease"`
	Mounts      []MountInfo  `json:"mounts"`
}

// LeaseInfo describes the host lease.
type LeaseInfo struct {
	ID      int64     `json:"id"`
	TTL     string    `json:"ttl"`
	Renewed time.Time `json:"renewed"`
}

// MountInfo describes one mounted volume.
type MountInfo struct {
	Volume   string   `json:"volume"`
	Path     string   `json:"path"`
	MountIDs []string `json:"mount-ids"`
	Lost     string   `json:"lost,omitempty"`
}

// Info returns the driver's state.
func (d *Driver) Info() Info {
	id, ttl, renewed := d.lease.State()
	st, _ := d.health.check()
	info := Info{Process: diag.Info("volplugin", d.started), Health: st, Host: d.cfg.Host, Holder: d.cfg.Holder, Maintenance: d.cfg.Maintenance, Lease: LeaseInfo{ID: id, TTL: ttl.String(), Renewed: renewed}}
	d.mu.Lock()
	for ref, m := range d.mounts {
		mi := MountInfo{Volume: ref.String(), Path: m.path, Lost: m.lost}
		for id := range m.ids {
			mi.MountIDs = append(mi.MountIDs, id)
		}
		sort.Strings(mi.MountIDs)
		info.Mounts = append(info.Mounts, mi)
	}
	d.mu.Unlock()
	sort.Slice(info.Mounts, func(i, j int) bool { return info.Mounts[i].Volume < info.Mounts[j].Volume })
	return info
}

func (d *Driver) serveInfo(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d.Info())
}

// startGlobalWait bounds the wait for volmaster at start: past it volplugin
// starts with the configuration it saved last (or the defaults).
const startGlobalWait = 5 * time.Second

// startGlobal reads the global configuration from volmaster; if volmaster
// does not answer in time it falls back to the one in the state file, then
// to the defaults. fresh tells whether volmaster answered.
func startGlobal(ctx context.Context, api *client.Client, st hostState, log *logrus.Logger) (config.Global, bool) {
	gctx, cancel := context.WithTimeout(ctx, startGlobalWait)
	g, err := api.Global(gctx)
	cancel()
	if err == nil {
		return g, true
	}
	if st.Global != nil {
		log.WithError(err).Warn("volmaster unreachable at start: using the global configuration saved last; new mounts wait for volmaster")
		return *st.Global, false
	}
	log.WithError(err).Warn("volmaster unreachable at start and no saved configuration: using the defaults; new mounts wait for volmaster")
	return config.DefaultGlobal(), false
}

// checkVolmasterURL refuses plain HTTP to a volmaster beyond loopback
// unless insecure: whoever can forge its answers chooses what this host runs
// as root (mkfs commands) and mounts. Every URL of a list is checked: a
// failover to a forgeable volmaster is as bad as starting with it.
func checkVolmasterURL(list string, insecure bool) error {
	urls := client.SplitURLs(list)
	if len(urls) == 0 {
		return fmt.Errorf("--volmaster is empty: name one or more URLs like https://volmaster:9005: %w", config.ErrInvalid)
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--volmaster %q must look like https://volmaster:9005: %w", raw, config.ErrInvalid)
		}
		if u.Scheme != "http" || insecure {
			continue
		}
		if h := u.Hostname(); h == "localhost" {
			continue
		} else if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			continue
		}
		return fmt.Errorf("--volmaster %s is plain HTTP beyond this host: use https:// (volmaster --tls-cert) "+
			"or say --insecure (a trusted network only): %w", raw, config.ErrInvalid)
	}
	return nil
}
