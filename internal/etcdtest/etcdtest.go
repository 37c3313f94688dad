// Package etcdtest starts a real embedded etcd for a test.
package etcdtest

import (
	"context"
	"crypto/tls"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/internal/testpki"
)

// startTimeout bounds how long a test waits for etcd to serve.
const startTimeout = 30 * time.Second

// Start runs an embedded etcd on free loopback ports for the duration of the
// test and returns a client for it and its endpoints. It goes through
// internal/etcdserver, the code volmaster runs.
func Start(tb testing.TB) (*clientv3.Client, []string) {
	tb.Helper()
	cli, srv := StartServer(tb, etcdserver.Config{Fast: true})
	return cli, srv.Endpoints
}

// StartServer is Start with the settings of c (auto-compaction, no fsync,
// ...); its empty directory, URLs and log level are filled in as Start
// does.
func StartServer(tb testing.TB, c etcdserver.Config) (*clientv3.Client, *etcdserver.Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if c.Dir == "" {
		c.Dir = tb.TempDir()
	}
	if c.ClientURL == "" {
		c.ClientURL = "http://127.0.0.1:0"
	}
	if c.PeerURL == "" {
		c.PeerURL = "http://127.0.0.1:0"
	}
	if c.LogLevel == "" {
		c.LogLevel = "panic"
	}
	srv, err := etcdserver.Start(ctx, c)
	if err != nil {
		tb.Fatalf("embedded etcd: %v", err)
	}
	tb.Cleanup(srv.Close)
	return newClient(tb, srv.Endpoints, nil), srv
}

// Options change how StartWith sets etcd up, for the settings volmaster's
// embedded etcd does not have but an external etcd may.
type Options struct {
	// TLS, if set, serves the client port over https with TLS.ServerCert,
	// and the returned client trusts TLS.CA and presents TLS.ClientCert.
	TLS *testpki.PKI
	// ClientCertAuth (with TLS) requires client certificates signed by
	// TLS.CA: mutual TLS.
	ClientCertAuth bool
	// MaxTxnOps, if not zero, replaces etcd's limit on the operations in
	// one transaction (--max-txn-ops, 128 by default).
	MaxTxnOps uint
}

// StartWith is Start with options. It configures etcd's embed package
// directly, as an operator configures an external etcd.
func StartWith(tb testing.TB, o Options) (*clientv3.Client, []string) {
	tb.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = tb.TempDir()
	cfg.Name = "etcdtest"
	cfg.LogLevel = "panic"
	cfg.TickMs, cfg.ElectionMs = 10, 50
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	var clientTLS *tls.Config
	if o.TLS != nil {
		cu.Scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: o.TLS.ServerCert, KeyFile: o.TLS.ServerKey}
		if o.ClientCertAuth {
			cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = o.TLS.CA, true
		}
		var err error
		if clientTLS, err = client.TLSConfig(o.TLS.CA, o.TLS.ClientCert, o.TLS.ClientKey); err != nil {
			tb.Fatal(err)
		}
	}
	if o.MaxTxnOps > 0 {
		cfg.MaxTxnOps = o.MaxTxnOps
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		tb.Fatalf("embedded etcd: %v", err)
	}
	tb.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		tb.Fatalf("embedded etcd: %v", err)
	case <-time.After(startTimeout):
		tb.Fatalf("embedded etcd did not become ready within %s", startTimeout)
	}
	var eps []string
	for _, l := range e.Clients {
		eps = append(eps, cu.Scheme+"://"+l.Addr().String())
	}
	return newClient(tb, eps, clientTLS), eps
}

func newClient(tb testing.TB, eps []string, tlsCfg *tls.Config) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}
