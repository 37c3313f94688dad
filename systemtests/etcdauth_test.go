package systemtests

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/testpki"
)

// With --auth the embedded etcd serves https and lets in only certificates
// from volmaster's own CA (DATA-DIR/etcd-pki): a client without one, or with
// one from another CA, cannot read the token records or write an admin
// token; a volsupervisor with a certificate from `volmaster etcd-client-cert`
// works. Without --auth, an --etcd-listen beyond loopback is refused at
// start.
func TestEmbeddedEtcdOnlyForVolmastersCertificates(t *testing.T) {
	data := t.TempDir()
	vm := startVolmaster(t, data, "--auth")
	if !strings.HasPrefix(vm.EtcdURL, "https://") {
		t.Fatalf("embedded etcd with --auth at %s, want https", vm.EtcdURL)
	}
	other := testpki.New(t, t.TempDir())
	pkiDir := filepath.Join(data, "etcd-pki")
	try := func(ca, cert, key string) error {
		tlsCfg, err := client.TLSConfig(ca, cert, key)
		if err != nil {
			return err
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{vm.EtcdURL}, DialTimeout: 3 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = cli.Put(ctx, "/volplugin/tokens/0123456789abcdef", `{"id":"0123456789abcdef","role":"admin","hash":"x"}`)
		return err
	}
	for name, c := range map[string][3]string{
		"no client certificate": {filepath.Join(pkiDir, "ca.crt"), "", ""},
		"another CA's client":   {filepath.Join(pkiDir, "ca.crt"), other.ClientCert, other.ClientKey},
		"trusting any other CA": {other.CA, other.ClientCert, other.ClientKey},
	} {
		if err := try(c[0], c[1], c[2]); err == nil {
			t.Errorf("%s wrote a token record into the embedded etcd", name)
		}
	}

	out, err := exec.Command(filepath.Join(binDir, "volmaster"), "etcd-client-cert", "--data-dir", data, "--name", "sup1", "--out", filepath.Join(data, "sup1")).CombinedOutput()
	if err != nil {
		t.Fatalf("volmaster etcd-client-cert: %v\n%s", err, out)
	}
	sup := filepath.Join(data, "sup1")
	if err := try(filepath.Join(sup, "ca.crt"), filepath.Join(sup, "sup1.crt"), filepath.Join(sup, "sup1.key")); err != nil {
		t.Fatalf("an issued certificate is refused: %v", err)
	}
	startProc(t, "volsupervisor", volsupervisorArgs(data, vm.EtcdURL, "s1", "--etcd-ca", filepath.Join(sup, "ca.crt"),
		"--etcd-cert", filepath.Join(sup, "sup1.crt"), "--etcd-key", filepath.Join(sup, "sup1.key")), "volsupervisor")

	// Beyond loopback without --auth: refused before anything starts.
	out2, code, _ := runToExit(t, "volmaster", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--etcd-listen", "http://0.0.0.0:0", "--etcd-peer-listen", "http://127.0.0.1:0")
	if code == 0 || !strings.Contains(out2, "--etcd-listen") || !strings.Contains(out2, "--auth") {
		t.Errorf("volmaster with a non-loopback --etcd-listen and no --auth: exit %d\n%s", code, out2)
	}
}
