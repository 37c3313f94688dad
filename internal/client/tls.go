package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/volplugin/volplugin/config"
)

// TLSConfig builds the client side of a TLS connection (to volmaster, or to
// etcd): ca verifies the server (system roots if empty); cert and key, if
// given, are the client's certificate for mutual TLS.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate: %w", ca, config.ErrInvalid)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("a client certificate and its key go together: %w", config.ErrInvalid)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %v: %w", err, config.ErrInvalid)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// WithTLS makes the client speak TLS with cfg (use an https:// URL).
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if t, ok := c.hc.Transport.(*http.Transport); ok {
			t = t.Clone()
			t.TLSClientConfig = cfg
			c.hc = &http.Client{Transport: t}
		}
	}
}
