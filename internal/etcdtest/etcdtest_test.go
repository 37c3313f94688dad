package etcdtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/testpki"
)

func TestStartServesReadsAndWrites(t *testing.T) {
	cli, eps := Start(t)
	if len(eps) == 0 {
		t.Fatal("no endpoints")
	}
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/a", "b"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/a")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "b" {
		t.Fatalf("get /a = %v, %v", resp, err)
	}
}

// StartWith's mutual TLS: its own client (CA + client certificate) works;
// a client without a certificate, or trusting another CA, gets nothing.
func TestStartWithMutualTLS(t *testing.T) {
	p := testpki.New(t, t.TempDir())
	cli, eps := StartWith(t, Options{TLS: &p, ClientCertAuth: true})
	if len(eps) == 0 || !strings.HasPrefix(eps[0], "https://") {
		t.Fatalf("endpoints %v, want https://", eps)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/a", "b"); err != nil {
		t.Fatalf("put with CA and client certificate: %v", err)
	}
	for name, files := range map[string][3]string{
		"no client certificate": {p.CA, "", ""},
		"other CA":              {p.OtherCA, p.ClientCert, p.ClientKey},
	} {
		cfg, err := client.TLSConfig(files[0], files[1], files[2])
		if err != nil {
			t.Fatal(err)
		}
		bad, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: cfg, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithTimeout(t.Context(), time.Second)
		if _, err := bad.Get(gctx, "/a"); err == nil {
			t.Errorf("%s: read succeeded", name)
		}
		gcancel()
		_ = bad.Close()
	}
}

// MaxTxnOps reaches etcd: a transaction with more operations is refused.
func TestStartWithMaxTxnOps(t *testing.T) {
	cli, _ := StartWith(t, Options{MaxTxnOps: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ops := []clientv3.Op{clientv3.OpPut("/a", "1"), clientv3.OpPut("/b", "2")}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatalf("2 ops: %v", err)
	}
	ops = append(ops, clientv3.OpPut("/c", "3"))
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("3 ops with MaxTxnOps 2: %v, want ErrTooManyOps", err)
	}
}
