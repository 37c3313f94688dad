// Package etcdserver runs an etcd member inside the process: volmaster's
// zero-configuration default (a single-member cluster), one member of a
// cluster that several volmasters form (embedded cluster mode), and the etcd
// of every test.
package etcdserver

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Config sets up an embedded etcd.
type Config struct {
	// Dir holds etcd's data; it survives restarts.
	Dir string
	// ClientURL and PeerURL are where etcd listens; a port of 0 picks a free
	// one (the chosen client URL is in Server.Endpoints).
	ClientURL string
	PeerURL   string
	// Name is this member's name (default "volmaster"); in a cluster every
	// member's must differ.
	Name string
	// InitialCluster lists the members of a new cluster as
	// name=peerURL,name=peerURL,... (etcd's --initial-cluster); empty means
	// this member alone. It is read only when Dir holds no data yet: a
	// member that has data restarts as the member it was.
	InitialCluster string
	// JoinExisting makes a new member join a running cluster (etcd's
	// --initial-cluster-state existing) after `etcdctl member add`;
	// InitialCluster then lists the running members and this one.
	JoinExisting bool
	// Fast shortens raft ticks, for tests.
	Fast bool
	// LogLevel is etcd's own log level (default "error").
	LogLevel string
	// CompactionRetention turns on etcd's own periodic auto-compaction
	// (--auto-compaction-mode=periodic): every retention (at most every
	// hour) the history older than the retention is compacted away. 0 keeps
	// all history. volmaster uses DefaultCompactionRetention.
	CompactionRetention time.Duration
	// UnsafeNoFsync skips fsync (etcd's --unsafe-no-fsync): a crash may
	// lose or corrupt data. For tests only.
	UnsafeNoFsync bool
	// TLS, if set, serves the client and peer ports over TLS with Cert and
	// Key and accepts only clients whose certificate CA signed (ClientURL
	// and PeerURL must then be https://).
	TLS *TLSFiles
}

// TLSFiles are the PEM files of mutual TLS.
type TLSFiles struct {
	CA, Cert, Key string
	// PeerName, if set, is the only certificate common name the peer port
	// accepts: the members', not every client certificate CA signed.
	PeerName string
}

// DefaultCompactionRetention is how much etcd history volmaster's embedded
// etcd keeps. Nothing in volplugin reads old revisions: watches that fall
// this far behind (a volsupervisor cut off from etcd for 10 minutes) reload
// from a fresh read, and policy history lives in keys of its own.
const DefaultCompactionRetention = 10 * time.Minute

// Server is a running embedded etcd.
type Server struct {
	etcd *embed.Etcd
	// Endpoints are the client URLs to dial.
	Endpoints []string
}

// MaxTxnOps is the embedded etcd's limit of operations per transaction.
const MaxTxnOps = 16384

// Start starts etcd and waits until it serves or ctx ends.
func Start(ctx context.Context, c Config) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Dir = c.Dir
	cfg.Name = c.Name
	if cfg.Name == "" {
		cfg.Name = "volmaster"
	}
	cfg.LogLevel = c.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if c.Fast {
		cfg.TickMs, cfg.ElectionMs = 10, 50
	}
	// A schema migration is one transaction of one put per policy; etcd's
	// default of 128 operations would stop it beyond 127 policies.
	cfg.MaxTxnOps = MaxTxnOps
	if c.CompactionRetention < 0 {
		return nil, fmt.Errorf("etcd compaction retention %s: must not be negative", c.CompactionRetention)
	}
	if c.CompactionRetention > 0 {
		cfg.AutoCompactionMode = embed.CompactorModePeriodic
		cfg.AutoCompactionRetention = c.CompactionRetention.String()
	}
	cfg.UnsafeNoFsync = c.UnsafeNoFsync
	cu, err := url.Parse(c.ClientURL)
	if err != nil || cu.Host == "" {
		return nil, fmt.Errorf("etcd client URL %q: must look like http://127.0.0.1:9379", c.ClientURL)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil || pu.Host == "" {
		return nil, fmt.Errorf("etcd peer URL %q: must look like http://127.0.0.1:9380", c.PeerURL)
	}
	if c.TLS != nil {
		if cu.Scheme != "https" || pu.Scheme != "https" {
			return nil, fmt.Errorf("etcd URLs %s and %s: must be https:// with TLS", cu, pu)
		}
		info := transport.TLSInfo{CertFile: c.TLS.Cert, KeyFile: c.TLS.Key, TrustedCAFile: c.TLS.CA, ClientCertAuth: true}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
		if c.TLS.PeerName != "" {
			cfg.PeerTLSInfo.AllowedCNs = []string{c.TLS.PeerName}
		}
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	if c.InitialCluster != "" {
		if !strings.Contains(","+c.InitialCluster+",", ","+cfg.Name+"="+pu.String()+",") {
			return nil, fmt.Errorf("etcd initial cluster %q must list this member as %s=%s", c.InitialCluster, cfg.Name, pu)
		}
		cfg.InitialCluster = c.InitialCluster
		// Members of one cluster must agree on it; another cluster's
		// member with the same names is refused.
		cfg.InitialClusterToken = "volplugin-" + c.InitialCluster
	}
	if c.JoinExisting {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", c.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd did not become ready: %w", ctx.Err())
	case <-time.After(time.Minute):
		e.Close()
		return nil, fmt.Errorf("embedded etcd did not become ready within a minute")
	}
	s := &Server{etcd: e}
	for _, l := range e.Clients {
		s.Endpoints = append(s.Endpoints, cu.Scheme+"://"+l.Addr().String())
	}
	return s, nil
}

// Close stops etcd.
func (s *Server) Close() { s.etcd.Close() }
