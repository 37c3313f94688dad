package volmaster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdclient"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/storage/backend"
)

// Options are volmaster's command-line settings.
type Options struct {
	// Listen is the API address (host:port).
	Listen string
	// Etcd lists external etcd endpoints; empty starts an embedded etcd.
	Etcd []string
	// EtcdListen and EtcdPeerListen are the embedded etcd's URLs.
	EtcdListen     string
	EtcdPeerListen string
	// EtcdName, EtcdInitialCluster and EtcdJoin make the embedded etcd one
	// member of a cluster of volmasters (embedded cluster mode): its name,
	// the members as name=peerURL,..., and whether it joins a running
	// cluster (after `etcdctl member add`) rather than forming a new one.
	EtcdName           string
	EtcdInitialCluster string
	EtcdJoin           bool
	// EtcdCompactionRetention is the embedded etcd's periodic
	// auto-compaction retention (0: keep all history). The command's
	// default is etcdserver.DefaultCompactionRetention.
	EtcdCompactionRetention time.Duration
	// EtcdDefrag tunes the embedded etcd's defragmentation check (zero
	// fields: etcdserver's defaults).
	EtcdDefrag etcdserver.Defrag
	// DataDir holds the embedded etcd's data and the local backend's images.
	DataDir string
	// MountRoot is where the local backend mounts (used by volplugin).
	MountRoot string
	Prefix    string
	Log       *logrus.Logger
	// TLSCert and TLSKey serve the API over TLS; TLSClientCA, if set,
	// requires client certificates signed by it (mutual TLS).
	TLSCert, TLSKey, TLSClientCA string
	// Auth requires bearer tokens with roles; BootstrapTokenFile receives
	// the first admin token if none exists.
	Auth               bool
	BootstrapTokenFile string
	// AuditLog, if set, is a file that receives every audit entry as a JSON
	// line (rotate it with logrotate: it is reopened when moved).
	AuditLog string
	// InsecureListenAny allows a non-loopback Listen without TLS client
	// authentication (then anyone who reaches the port can try tokens, or
	// change everything without --auth).
	InsecureListenAny bool
	// EtcdCA, EtcdCert and EtcdKey configure TLS to an external etcd.
	EtcdCA, EtcdCert, EtcdKey string
	// CephConf, if set, enables the Ceph backend with this ceph.conf (its
	// keyring and the admin user unless a policy's driver options say
	// otherwise).
	CephConf string
	// Started, if set, is called once the API is listening.
	Started func(apiURL string, etcdEndpoints []string)
}

// Serve runs volmaster until ctx ends.
func Serve(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	keys, err := config.NewKeys(o.Prefix)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(o.DataDir) {
		return fmt.Errorf("--data-dir %q must be an absolute path: %w", o.DataDir, config.ErrInvalid)
	}
	// Every flag is checked before anything starts.
	tlsCfg, err := serverTLS(o)
	if err != nil {
		return err
	}
	if err := checkExposure(o); err != nil {
		return err
	}
	endpoints := o.Etcd
	if len(endpoints) == 0 {
		ecfg := etcdserver.Config{
			Dir: filepath.Join(o.DataDir, "etcd"), ClientURL: o.EtcdListen, PeerURL: o.EtcdPeerListen,
			CompactionRetention: o.EtcdCompactionRetention,
			Name:                o.EtcdName, InitialCluster: o.EtcdInitialCluster, JoinExisting: o.EtcdJoin,
		}
		if o.Auth {
			files, err := embeddedEtcdPKI(o.DataDir, o.EtcdInitialCluster != "", o.EtcdListen, o.EtcdPeerListen)
			if err != nil {
				return err
			}
			ecfg.TLS = &files.server
			ecfg.ClientURL, ecfg.PeerURL = httpsURL(o.EtcdListen), httpsURL(o.EtcdPeerListen)
			ecfg.InitialCluster = httpsCluster(o.EtcdInitialCluster)
			o.EtcdCA, o.EtcdCert, o.EtcdKey = files.server.CA, files.clientCert, files.clientKey
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		srv, err := etcdserver.Start(sctx, ecfg)
		cancel()
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = srv.Endpoints
		o.Log.WithField("endpoints", endpoints).Info("embedded etcd started")
	}
	cli, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: endpoints, CA: o.EtcdCA, Cert: o.EtcdCert, Key: o.EtcdKey})
	if err != nil {
		return err
	}
	defer cli.Close()
	if len(o.Etcd) == 0 {
		// Our own etcd: give back the space compaction frees. An external
		// etcd is the operator's to defragment (docs/operator-guide.md).
		dctx, dcancel := context.WithCancel(ctx)
		d := o.EtcdDefrag
		if d.Log == nil {
			d.Log = o.Log
		}
		done := make(chan struct{})
		go func() { defer close(done); d.Run(dctx, cli, endpoints[0]) }()
		defer func() { dcancel(); <-done }()
	}

	backends, err := backend.Open(backend.Options{LocalDataDir: filepath.Join(o.DataDir, "local"), MountRoot: o.MountRoot, CephConf: o.CephConf})
	if err != nil {
		return err
	}
	defer backends.Close()
	// Made now, not at the first volume: a volcsi node on this host reports
	// the identity as its topology when it registers.
	if _, err := backends.Local.StoreID(); err != nil {
		return err
	}
	s, err := New(Config{
		Client: cli, Keys: keys, Log: o.Log, Auth: o.Auth,
		Backends: backends.CRUD, Snapshotters: backends.Snapshotters, AuditFile: o.AuditLog,
	})
	if err != nil {
		return err
	}
	defer s.audit.file.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.Run(rctx); err != nil {
		return err
	}
	if o.Auth {
		path := o.BootstrapTokenFile
		if path == "" {
			path = filepath.Join(o.DataDir, "admin.token")
		}
		if err := s.Bootstrap(ctx, path); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https"
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	apiURL := scheme + "://" + ln.Addr().String()
	o.Log.WithFields(logrus.Fields{"url": apiURL, "etcd": endpoints, "prefix": keys.Prefix}).Info("volmaster listening")
	registered := s.Register(rctx, apiURL)
	defer func() { cancel(); <-registered }()
	if o.Started != nil {
		o.Started(apiURL, endpoints)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve API: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serverTLS builds the API's TLS configuration, nil for plain HTTP.
func serverTLS(o Options) (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSKey == "" {
		if o.TLSClientCA != "" {
			return nil, fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key: %w", config.ErrInvalid)
		}
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %v: %w", err, config.ErrInvalid)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if o.TLSClientCA != "" {
		pem, err := os.ReadFile(o.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate: %w", o.TLSClientCA, config.ErrInvalid)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// checkExposure refuses a listen address beyond loopback unless clients must
// present a certificate, or the operator says so with --insecure-listen-any.
func checkExposure(o Options) error {
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v: %w", o.Listen, err, config.ErrInvalid)
	}
	if !loopback(host) && !o.Auth && o.TLSClientCA == "" && !o.InsecureListenAny {
		return fmt.Errorf("--listen %s is reachable beyond this host and nothing authenticates clients: "+
			"use --auth (tokens), --tls-client-ca (mutual TLS) or say --insecure-listen-any: %w", o.Listen, config.ErrInvalid)
	}
	if len(o.Etcd) > 0 {
		if o.EtcdInitialCluster != "" || o.EtcdJoin {
			return fmt.Errorf("--etcd-initial-cluster and --etcd-join configure the embedded etcd; with --etcd there is none: %w", config.ErrInvalid)
		}
		return nil
	}
	if o.EtcdJoin && o.EtcdInitialCluster == "" {
		return fmt.Errorf("--etcd-join needs --etcd-initial-cluster (the running members and this one): %w", config.ErrInvalid)
	}
	if o.EtcdInitialCluster != "" {
		if o.EtcdName == "" {
			return fmt.Errorf("--etcd-initial-cluster needs --etcd-name (this member's name in it): %w", config.ErrInvalid)
		}
		p, err := url.Parse(o.EtcdPeerListen)
		if err != nil || p.Host == "" {
			return fmt.Errorf("--etcd-peer-listen %q must look like http://10.0.0.5:9380: %w", o.EtcdPeerListen, config.ErrInvalid)
		}
		// Peers replicate every record, tokens included: without --auth
		// (TLS with the cluster's shared CA) they do it unauthenticated.
		if !loopback(p.Hostname()) && !o.Auth && !o.InsecureListenAny {
			return fmt.Errorf("--etcd-peer-listen %s is reachable beyond this host and etcd peers authenticate nobody without --auth: "+
				"use --auth (peers then need a certificate from the cluster's shared CA, see volmaster etcd-ca) "+
				"or say --insecure-listen-any (a trusted network only): %w", o.EtcdPeerListen, config.ErrInvalid)
		}
	}
	u, err := url.Parse(o.EtcdListen)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--etcd-listen %q must look like http://127.0.0.1:9379: %w", o.EtcdListen, config.ErrInvalid)
	}
	// Whoever reaches etcd can write an admin token or any record: with
	// --auth only certificates from volmaster's own CA get in (https).
	if !loopback(u.Hostname()) && !o.Auth && !o.InsecureListenAny {
		return fmt.Errorf("--etcd-listen %s is reachable beyond this host and the embedded etcd authenticates nobody: "+
			"use --auth (etcd then requires client certificates volmaster issues) or say --insecure-listen-any: %w", o.EtcdListen, config.ErrInvalid)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
