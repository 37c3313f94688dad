// Package testpki writes a throwaway public key infrastructure for tests of
// TLS: a CA with a server and a client certificate, and a second CA that
// trusts nothing here, to play the wrong CA. One place for it, so every TLS
// test (volmaster's API, etcd's client port) builds certificates the same way,
// with the code volmaster uses for its own (internal/pki).
package testpki

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/volplugin/volplugin/internal/pki"
)

// PKI holds the paths of the PEM files New wrote.
type PKI struct {
	// CA signed ServerCert and ClientCert.
	CA string
	// ServerCert is valid for 127.0.0.1, ::1 and localhost (server auth).
	ServerCert, ServerKey string
	// ClientCert is a client-auth certificate.
	ClientCert, ClientKey string
	// OtherCA signed only OtherClientCert: a CA the servers do not trust.
	OtherCA                         string
	OtherClientCert, OtherClientKey string
}

// New writes a fresh PKI into dir. Certificates are valid from an hour ago
// to an hour from now, so clock skew between processes does not matter.
func New(tb testing.TB, dir string) PKI {
	tb.Helper()
	ca, err := pki.LoadOrCreateCA(dir, "ca", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	other, err := pki.LoadOrCreateCA(dir, "other-ca", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	p := PKI{CA: ca.CertPath, OtherCA: other.CertPath}
	issue := func(c *pki.CA, name string, usage int) (string, string) {
		cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := c.Issue(name, usage, []string{"127.0.0.1", "::1", "localhost"}, time.Hour, cp, kp); err != nil {
			tb.Fatal(err)
		}
		return cp, kp
	}
	p.ServerCert, p.ServerKey = issue(ca, "server", pki.Server)
	p.ClientCert, p.ClientKey = issue(ca, "client", pki.Client)
	p.OtherClientCert, p.OtherClientKey = issue(other, "other-client", pki.Client)
	return p
}
