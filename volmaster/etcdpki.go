package volmaster

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/volplugin/volplugin/config"
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

// etcdMemberName is the common name of the certificate each embedded etcd
// member serves and presents to its peers: the peer port accepts no other,
// so a client certificate from the same CA (a volsupervisor's) cannot speak
// raft.
const etcdMemberName = "etcd"

// embeddedEtcdPKI makes sure DATA-DIR/etcd-pki holds a CA, a certificate for
// etcd's ports (valid for loopback and the hosts of listen and peerListen)
// and a client certificate for volmaster, creating what is missing. Only
// holders of a certificate from this CA (volmaster; volsupervisors given one
// with `volmaster etcd-client-cert`) can then talk to the embedded etcd.
// In embedded cluster mode (cluster) the CA must be there already: the
// members trust each other only through one CA that they share (made by
// `volmaster etcd-ca` and copied to each), and one made here would be this
// member's alone.
func embeddedEtcdPKI(dataDir string, cluster bool, listen, peerListen string) (etcdPKIFiles, error) {
	dir := EtcdPKIDir(dataDir)
	if cluster && (missing(filepath.Join(dir, "ca.crt")) || missing(filepath.Join(dir, "ca.key"))) {
		return etcdPKIFiles{}, fmt.Errorf("--etcd-initial-cluster with --auth needs the cluster's shared etcd CA in %s (ca.crt and ca.key): "+
			"make it once with `volmaster etcd-ca --out DIR` and copy both files there on every volmaster before its first start: %w", dir, config.ErrInvalid)
	}
	ca, err := pki.LoadOrCreateCA(dir, "ca", etcdCAValidity)
	if err != nil {
		return etcdPKIFiles{}, fmt.Errorf("embedded etcd CA: %w", err)
	}
	f := etcdPKIFiles{
		server: etcdserver.TLSFiles{CA: ca.CertPath, Cert: filepath.Join(dir, "etcd.crt"), Key: filepath.Join(dir, "etcd.key"),
			PeerName: etcdMemberName},
		clientCert: filepath.Join(dir, "volmaster.crt"), clientKey: filepath.Join(dir, "volmaster.key"),
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	for _, l := range []string{listen, peerListen} {
		if u, err := url.Parse(l); err == nil && u.Hostname() != "" && !slices.Contains(hosts, u.Hostname()) {
			hosts = append(hosts, u.Hostname())
		}
	}
	if missing(f.server.Cert) || missing(f.server.Key) {
		// The peer port uses it as a client too.
		if err := ca.Issue(etcdMemberName, pki.Server|pki.Client, hosts, etcdCertValidity, f.server.Cert, f.server.Key); err != nil {
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

// NewEtcdClusterCA makes the CA that the volmasters of an embedded cluster
// with --auth share: outDir/ca.crt and outDir/ca.key (0600, in a 0700
// directory), to be copied to each one's DATA-DIR/etcd-pki. An existing CA
// there is never replaced (its certificates would all stop working).
func NewEtcdClusterCA(outDir string) error {
	for _, f := range []string{"ca.crt", "ca.key"} {
		if !missing(filepath.Join(outDir, f)) {
			return fmt.Errorf("%s exists already; a CA is never replaced: choose another --out: %w", filepath.Join(outDir, f), config.ErrInvalid)
		}
	}
	_, err := pki.LoadOrCreateCA(outDir, "ca", etcdCAValidity)
	return err
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

// httpsCluster turns the http:// peer URLs of an --etcd-initial-cluster
// list (NAME=URL,...) into https:// (members with TLS).
func httpsCluster(list string) string {
	if list == "" {
		return ""
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if name, u, ok := strings.Cut(p, "="); ok {
			parts[i] = name + "=" + httpsURL(u)
		}
	}
	return strings.Join(parts, ",")
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
