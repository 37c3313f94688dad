// Package etcdv2 reads the original volplugin's key tree from a live etcd
// that serves the v2 API (etcd 3.4 and 3.5 with --enable-v2), through the v2
// client the original used, go.etcd.io/etcd/client/v2. It only reads.
package etcdv2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	client "go.etcd.io/etcd/client/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/migrate"
)

// Config says where the original's etcd is.
type Config struct {
	// Endpoints are its client URLs (http:// or https://).
	Endpoints []string
	// Prefix is the original's key prefix (migrate.DefaultPrefix if empty).
	Prefix string
	// TLS is used for https:// endpoints (nil: system roots, no client
	// certificate).
	TLS *tls.Config
	// Timeout bounds the read (a minute if zero).
	Timeout time.Duration
}

// Read returns the tree under c.Prefix: one recursive, sorted GET, the
// same read as the dump in the original's testdata.
func Read(ctx context.Context, c Config) (migrate.Tree, error) {
	if len(c.Endpoints) == 0 {
		return nil, fmt.Errorf("no etcd endpoint given: %w", config.ErrInvalid)
	}
	if c.Prefix == "" {
		c.Prefix = migrate.DefaultPrefix
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     c.TLS,
	}
	defer tr.CloseIdleConnections()
	cli, err := client.New(client.Config{Endpoints: c.Endpoints, Transport: tr, HeaderTimeoutPerRequest: c.Timeout})
	if err != nil {
		return nil, fmt.Errorf("etcd v2 client for %v: %v: %w", c.Endpoints, err, config.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := client.NewKeysAPI(cli).Get(ctx, c.Prefix, &client.GetOptions{Recursive: true, Sort: true, Quorum: true})
	if err != nil {
		var ce client.Error
		if errors.As(err, &ce) && ce.Code == client.ErrorCodeKeyNotFound {
			return nil, fmt.Errorf("etcd %v holds nothing under %s (is that the original's prefix?): %w", c.Endpoints, c.Prefix, config.ErrNotFound)
		}
		return nil, fmt.Errorf("read %s from etcd %v over the v2 API (etcd 3.4/3.5 serve it with --enable-v2): %v: %w",
			c.Prefix, c.Endpoints, err, config.ErrUnavailable)
	}
	return migrate.FromNode(convert(resp.Node), c.Prefix)
}

func convert(n *client.Node) *migrate.Node {
	if n == nil {
		return &migrate.Node{}
	}
	out := &migrate.Node{Key: n.Key, Dir: n.Dir, Value: n.Value, TTL: n.TTL}
	for _, c := range n.Nodes {
		out.Nodes = append(out.Nodes, convert(c))
	}
	return out
}
