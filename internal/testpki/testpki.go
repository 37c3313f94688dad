// Package testpki writes a throwaway public key infrastructure for tests of
// TLS: a CA with a server and a client certificate, and a second CA that
// trusts nothing here, to play the wrong CA. One place for it, so every TLS
// test (volmaster's API, etcd's client port) builds certificates the same way.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	w := writer{tb: tb, dir: dir}
	ca, caKey, caPath := w.ca("ca")
	other, otherKey, otherPath := w.ca("other-ca")
	p := PKI{CA: caPath, OtherCA: otherPath}
	p.ServerCert, p.ServerKey = w.leaf("server", ca, caKey, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = w.leaf("client", ca, caKey, x509.ExtKeyUsageClientAuth)
	p.OtherClientCert, p.OtherClientKey = w.leaf("other-client", other, otherKey, x509.ExtKeyUsageClientAuth)
	return p
}

type writer struct {
	tb  testing.TB
	dir string
}

func (w writer) template(name string) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		w.tb.Fatal(err)
	}
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
}

func (w writer) key() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		w.tb.Fatal(err)
	}
	return key
}

func (w writer) ca(name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	key := w.key()
	tmpl := w.template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		w.tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		w.tb.Fatal(err)
	}
	path := filepath.Join(w.dir, name+".pem")
	w.pem(path, "CERTIFICATE", der)
	return cert, key, path
}

func (w writer) leaf(name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (string, string) {
	key := w.key()
	tmpl := w.template(name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	tmpl.DNSNames = []string{"localhost"}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		w.tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		w.tb.Fatal(err)
	}
	cp, kp := filepath.Join(w.dir, name+".pem"), filepath.Join(w.dir, name+"-key.pem")
	w.pem(cp, "CERTIFICATE", der)
	w.pem(kp, "EC PRIVATE KEY", kder)
	return cp, kp
}

func (w writer) pem(path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		w.tb.Fatal(err)
	}
}
