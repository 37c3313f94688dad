package systemtests

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
	"strings"
	"testing"
	"time"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir and returns their paths.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey, otherCA string }

func makePKI(t *testing.T, dir string) pki {
	t.Helper()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		path := filepath.Join(dir, name+".pem")
		writePEM(t, path, "CERTIFICATE", der)
		return cert, key, path
	}
	leaf := func(name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, cp, "CERTIFICATE", der)
		writePEM(t, kp, "EC PRIVATE KEY", kder)
		return cp, kp
	}
	ca, caKey, caPath := newCA("ca")
	_, _, other := newCA("other-ca")
	sc, sk := leaf("server", ca, caKey, x509.ExtKeyUsageServerAuth)
	cc, ck := leaf("client", ca, caKey, x509.ExtKeyUsageClientAuth)
	return pki{ca: caPath, serverCert: sc, serverKey: sk, clientCert: cc, clientKey: ck, otherCA: other}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TLS: a client without the CA fails, with it works; with mutual TLS a client
// without a certificate is rejected.
func TestTLSAndMutualTLS(t *testing.T) {
	data := t.TempDir()
	p := makePKI(t, t.TempDir())
	vm := startVolmaster(t, data, "--tls-cert", p.serverCert, "--tls-key", p.serverKey)
	if !strings.HasPrefix(vm.URL, "https://") {
		t.Fatalf("TLS volmaster printed %s", vm.URL)
	}
	if _, e, code := volcli(t, vm.URL, "", "--timeout", "5s", "policy", "list"); code != 1 || !strings.Contains(e, "certificate") {
		t.Errorf("without the CA: exit %d %s", code, e)
	}
	if _, e, code := volcli(t, vm.URL, "", "--timeout", "5s", "--tls-ca", p.otherCA, "policy", "list"); code != 1 || !strings.Contains(e, "certificate") {
		t.Errorf("with another CA: exit %d %s", code, e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"10MB"}}`, "--tls-ca", p.ca, "policy", "upload", "p"); code != 0 {
		t.Errorf("with the CA: exit %d %s", code, e)
	}

	data2 := t.TempDir()
	mvm := startVolmaster(t, data2, "--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--tls-client-ca", p.ca)
	if _, e, code := volcli(t, mvm.URL, "", "--timeout", "5s", "--tls-ca", p.ca, "policy", "list"); code != 1 {
		t.Errorf("mutual TLS without a client certificate: exit %d %s", code, e)
	}
	if out, e, code := volcli(t, mvm.URL, "", "--tls-ca", p.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey, "policy", "list"); code != 0 {
		t.Errorf("mutual TLS with a client certificate: exit %d %s %s", code, out, e)
	}
}

// Without client authentication volmaster refuses to listen beyond loopback
// unless told to.
func TestListenAnyNeedsAuthOrConsent(t *testing.T) {
	ctx := t.Context()
	out, err := execOut(ctx, filepath.Join(binDir, "volmaster"), "--listen", "0.0.0.0:0", "--data-dir", t.TempDir(),
		"--etcd-listen", "http://127.0.0.1:0", "--etcd-peer-listen", "http://127.0.0.1:0")
	if err == nil || !strings.Contains(out, "--insecure-listen-any") {
		t.Errorf("volmaster on 0.0.0.0 without auth: %v\n%s", err, out)
	}
}
