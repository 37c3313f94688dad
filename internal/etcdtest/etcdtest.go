// Package etcdtest starts a real embedded etcd for a test.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/internal/etcdserver"
)

// Start runs an embedded etcd on free loopback ports for the duration of the
// test and returns a client for it and its endpoints.
func Start(tb testing.TB) (*clientv3.Client, []string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		Dir:       tb.TempDir(),
		ClientURL: "http://127.0.0.1:0",
		PeerURL:   "http://127.0.0.1:0",
		Fast:      true,
		LogLevel:  "panic",
	})
	if err != nil {
		tb.Fatalf("embedded etcd: %v", err)
	}
	tb.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli, srv.Endpoints
}
