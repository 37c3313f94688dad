// Package etcdclient connects volmaster and volsupervisor to etcd, with TLS
// when the endpoints are https://. Dial checks the flags against the URLs
// and makes first contact before the daemon starts, so a wrong certificate
// authority or a missing client certificate ends the daemon at once with the
// TLS error, instead of every etcd call waiting out its timeout with nothing
// but "context deadline exceeded" (the etcd client retries a failing
// handshake until the caller's deadline and drops the reason).
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd client URLs, all http:// or all https://.
	Endpoints []string
	// CA verifies etcd's certificate (empty: the system's CAs); Cert and
	// Key are a client certificate for an etcd that requires one. Any of
	// them requires https:// endpoints.
	CA, Cert, Key string
	// Timeout bounds first contact (config.DefaultEtcdTimeout if zero).
	Timeout time.Duration
	// Logger is the etcd client's logger (the client's default if nil).
	Logger *zap.Logger
}

// Dial returns a client for etcd once etcd has answered a read. The client
// stops when ctx ends or on Close. Bad flags wrap config.ErrInvalid; an etcd
// that cannot be reached, or refuses the TLS handshake, wraps
// config.ErrUnavailable.
func Dial(ctx context.Context, c Config) (*clientv3.Client, error) {
	secure, err := scheme(c)
	if err != nil {
		return nil, err
	}
	if c.Timeout <= 0 {
		c.Timeout = config.DefaultEtcdTimeout
	}
	var tlsCfg *tls.Config
	if secure {
		if tlsCfg, err = client.TLSConfig(c.CA, c.Cert, c.Key); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	// The TLS handshake is tried by hand first: it fails in milliseconds
	// with the real reason, where the etcd client would only time out.
	var checked []handshake
	if secure {
		checked = handshakes(ctx, c.Endpoints, tlsCfg, c.Timeout)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := allRefused(checked); err != nil {
			return nil, err
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: tlsCfg, DialTimeout: c.Timeout, Context: ctx, Logger: c.Logger})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %v: %w", c.Endpoints, err, config.ErrInvalid)
	}
	pctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// Any key will do: the point is a linearizable read, which needs a
	// working connection and a leader. Permission denied is an answer too.
	_, err = cli.Get(pctx, "health", clientv3.WithCountOnly())
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		_ = cli.Close()
		msg := fmt.Sprintf("etcd at %s did not answer within %s: %v", strings.Join(c.Endpoints, ","), c.Timeout, err)
		for _, h := range checked {
			if h.err != nil {
				msg += fmt.Sprintf("; %s: %v", h.endpoint, h.err)
			}
		}
		if errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%s: %w", msg, err)
		}
		return nil, fmt.Errorf("%s: %w", msg, config.ErrUnavailable)
	}
	return cli, nil
}

// scheme checks the endpoints and reports whether they use TLS. The etcd
// client takes the first endpoint's scheme for all of them and silently
// ignores TLS settings for an http:// endpoint, so both are refused here.
func scheme(c Config) (bool, error) {
	if len(c.Endpoints) == 0 {
		return false, fmt.Errorf("no etcd endpoint: %w", config.ErrInvalid)
	}
	var secure bool
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return false, fmt.Errorf("etcd endpoint %q must look like http://HOST:PORT or https://HOST:PORT: %w", ep, config.ErrInvalid)
		}
		if i == 0 {
			secure = u.Scheme == "https"
		} else if secure != (u.Scheme == "https") {
			return false, fmt.Errorf("etcd endpoints %v mix http:// and https://: %w", c.Endpoints, config.ErrInvalid)
		}
	}
	if !secure && (c.CA != "" || c.Cert != "" || c.Key != "") {
		return false, fmt.Errorf("--etcd-ca, --etcd-cert and --etcd-key need https:// etcd endpoints; with %s they would be ignored and the connection unencrypted: %w",
			c.Endpoints[0], config.ErrInvalid)
	}
	return secure, nil
}

// handshake is the outcome of a TLS handshake with one endpoint.
type handshake struct {
	endpoint string
	// refused is set when the connection was made but TLS failed: a
	// certificate or protocol problem that waiting will not fix.
	refused bool
	err     error
}

// alertWait is how long a finished handshake waits for the server to
// reject it after all: in TLS 1.3 a server that requires a client
// certificate says so only after the client's side of the handshake is done.
const alertWait = 500 * time.Millisecond

func handshakes(ctx context.Context, endpoints []string, cfg *tls.Config, timeout time.Duration) []handshake {
	out := make([]handshake, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = tryHandshake(ctx, ep, cfg, timeout)
		}()
	}
	wg.Wait()
	return out
}

func tryHandshake(ctx context.Context, ep string, cfg *tls.Config, timeout time.Duration) handshake {
	h := handshake{endpoint: ep}
	u, _ := url.Parse(ep) // checked by scheme
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		h.err = err
		return h
	}
	defer conn.Close()
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"h2"} // as gRPC asks
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		// A handshake cut short by the deadline says nothing about
		// certificates; the etcd client may still get through.
		h.refused = !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
		h.err = fmt.Errorf("TLS handshake: %w%s", err, hint(err))
		return h
	}
	_ = tc.SetReadDeadline(time.Now().Add(alertWait))
	var b [1]byte
	_, err = tc.Read(b[:])
	var alert tls.AlertError
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		// Silence: the server accepted us and waits for gRPC to speak.
	case err != nil && (errors.As(err, &alert) || strings.Contains(err.Error(), "remote error")):
		h.refused, h.err = true, fmt.Errorf("TLS handshake: etcd refused it: %w%s", err, hint(err))
	}
	return h
}

// hint says which flag a TLS error points to.
func hint(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch s := err.Error(); {
	case errors.As(err, &unknown):
		return " (--etcd-ca must name the CA that signed etcd's certificate)"
	case strings.Contains(s, "certificate required") || strings.Contains(s, "bad certificate") || strings.Contains(s, "unknown certificate"):
		return " (etcd wants a client certificate signed by a CA it trusts: --etcd-cert and --etcd-key)"
	case errors.As(err, &host):
		return " (etcd's certificate does not name the host in the etcd URL)"
	}
	return ""
}

// allRefused returns an error if TLS failed with every endpoint.
func allRefused(hs []handshake) error {
	var msgs []string
	for _, h := range hs {
		if !h.refused {
			return nil
		}
		msgs = append(msgs, fmt.Sprintf("%s: %v", h.endpoint, h.err))
	}
	return fmt.Errorf("etcd %s: %w", strings.Join(msgs, "; "), config.ErrUnavailable)
}
