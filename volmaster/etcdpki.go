package volmaster

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/internal/pki"
)

// Validity of what volmaster issues for its embedded etcd: the CA for ten
// years, the certificates for five (reissued when missing).
const (
	etcdCAValidity   = 10 * 365 * 24 * time.Hour
	etcdCertValidity = 5 * 365 * 24 * time.Hour
)

// EtcdPKIDir is where volmaster keeps the CA and certificates of its
// embedded etcd under --data-dir (with --auth).
func EtcdPKIDir(dataDir string) string { return filepath.Join(dataDir, "etcd-pki") }

type etcdPKIFiles struct {
	server                etcdserver.TLSFiles
	clientCert, clientKey string
}

// embeddedEtcdPKI makes sure DATA-DIR/etcd-pki holds a CA, a certificate for
// etcd's ports (valid for loopback and listen's host) and a client
// certificate for volmaster, creating what is missing. Only holders of a
// certificate from this CA (volmaster; volsupervisors given one with
// `volmaster etcd-client-cert`) can then talk to the embedded etcd.
func embeddedEtcdPKI(dataDir, listen string) (etcdPKIFiles, error) {
	dir := EtcdPKIDir(dataDir)
	ca, err := pki.LoadOrCreateCA(dir, "ca", etcdCAValidity)
	if err != nil {
		return etcdPKIFiles{}, fmt.Errorf("embedded etcd CA: %w", err)
	}
	f := etcdPKIFiles{
		server:     etcdserver.TLSFiles{CA: ca.CertPath, Cert: filepath.Join(dir, "etcd.crt"), Key: filepath.Join(dir, "etcd.key")},
		clientCert: filepath.Join(dir, "volmaster.crt"), clientKey: filepath.Join(dir, "volmaster.key"),
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if u, err := url.Parse(listen); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	if missing(f.server.Cert) || missing(f.server.Key) {
		// The peer port uses it as a client too.
		if err := ca.Issue("etcd", pki.Server|pki.Client, hosts, etcdCertValidity, f.server.Cert, f.server.Key); err != nil {
			return etcdPKIFiles{}, fmt.Errorf("embedded etcd certificate: %w", err)
		}
	}
	if missing(f.clientCert) || missing(f.clientKey) {
		if err := ca.Issue("volmaster", pki.Client, nil, etcdCertValidity, f.clientCert, f.clientKey); err != nil {
			return etcdPKIFiles{}, fmt.Errorf("volmaster's etcd client certificate: %w", err)
		}
	}
	return f, nil
}

func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// httpsURL turns an http:// URL into https:// (the embedded etcd with TLS).
func httpsURL(u string) string {
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		return "https://" + rest
	}
	return u
}

// IssueEtcdClientCert writes a client certificate for the embedded etcd of
// the volmaster with data directory dataDir, for name (a volsupervisor), to
// outDir: ca.crt, NAME.crt, NAME.key (0600). The CA must exist (volmaster
// --auth made it at its first start).
func IssueEtcdClientCert(dataDir, name, outDir string) error {
	dir := EtcdPKIDir(dataDir)
	if missing(filepath.Join(dir, "ca.crt")) {
		return fmt.Errorf("no embedded etcd CA in %s: start volmaster with --auth and this --data-dir first", dir)
	}
	ca, err := pki.LoadOrCreateCA(dir, "ca", etcdCAValidity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return err
	}
	b, err := os.ReadFile(ca.CertPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "ca.crt"), b, 0o644); err != nil {
		return err
	}
	return ca.Issue(name, pki.Client, nil, etcdCertValidity, filepath.Join(outDir, name+".crt"), filepath.Join(outDir, name+".key"))
}
