package systemtests

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/internal/testpki"
)

// TLS: a client without the CA fails, with it works; with mutual TLS a client
// without a certificate is rejected.
func TestTLSAndMutualTLS(t *testing.T) {
	data := t.TempDir()
	p := testpki.New(t, t.TempDir())
	vm := startVolmaster(t, data, "--tls-cert", p.ServerCert, "--tls-key", p.ServerKey)
	if !strings.HasPrefix(vm.URL, "https://") {
		t.Fatalf("TLS volmaster printed %s", vm.URL)
	}
	if _, e, code := volcli(t, vm.URL, "", "--timeout", "5s", "policy", "list"); code != 1 || !strings.Contains(e, "certificate") {
		t.Errorf("without the CA: exit %d %s", code, e)
	}
	if _, e, code := volcli(t, vm.URL, "", "--timeout", "5s", "--tls-ca", p.OtherCA, "policy", "list"); code != 1 || !strings.Contains(e, "certificate") {
		t.Errorf("with another CA: exit %d %s", code, e)
	}
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"10MB"}}`, "--tls-ca", p.CA, "policy", "upload", "p"); code != 0 {
		t.Errorf("with the CA: exit %d %s", code, e)
	}

	data2 := t.TempDir()
	mvm := startVolmaster(t, data2, "--tls-cert", p.ServerCert, "--tls-key", p.ServerKey, "--tls-client-ca", p.CA)
	if _, e, code := volcli(t, mvm.URL, "", "--timeout", "5s", "--tls-ca", p.CA, "policy", "list"); code != 1 {
		t.Errorf("mutual TLS without a client certificate: exit %d %s", code, e)
	}
	if out, e, code := volcli(t, mvm.URL, "", "--tls-ca", p.CA, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey, "policy", "list"); code != 0 {
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
