// Command volmaster serves the volplugin control-plane REST API.
package main

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/cmdutil"
	"github.com/volplugin/volplugin/internal/etcdserver"
	"github.com/volplugin/volplugin/volmaster"
)

func main() {
	app := &cli.App{
		Name:  "volmaster",
		Usage: "the volplugin control plane: REST API over policies and volumes in etcd",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9005", Usage: "API address `HOST:PORT`"},
			&cli.StringSliceFlag{Name: "etcd", Usage: "etcd client `URL`s (comma-separated or repeated); absent: run an embedded etcd in --data-dir"},
			&cli.StringFlag{Name: "etcd-listen", Value: "http://127.0.0.1:9379", Usage: "embedded etcd client `URL` (other daemons dial it); with --auth it serves https and only certificates volmaster issues (etcd-client-cert) get in"},
			&cli.StringFlag{Name: "etcd-peer-listen", Value: "http://127.0.0.1:9380", Usage: "embedded etcd peer `URL` (https with --auth: only the members' certificates get in)"},
			&cli.StringFlag{Name: "etcd-name", Usage: "embedded cluster mode: this volmaster's etcd member `NAME` (unique in the cluster)"},
			&cli.StringFlag{Name: "etcd-initial-cluster", Usage: "embedded cluster mode: the volmasters' etcd members as `NAME=PEERURL,...` (every member lists all, itself included; read only on first start; with --auth the members speak https and need the shared CA of volmaster etcd-ca)"},
			&cli.BoolFlag{Name: "etcd-join", Usage: "embedded cluster mode: join a running cluster (after etcdctl member add) instead of forming a new one"},
			&cli.DurationFlag{Name: "etcd-compaction-retention", Value: etcdserver.DefaultCompactionRetention, Usage: "embedded etcd: compact history older than `DURATION` (etcd's periodic auto-compaction; 0 keeps all history)"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/volplugin", Usage: "`DIR` for the embedded etcd and the local backend's images"},
			&cli.StringFlag{Name: "mount-root", Value: config.DefaultMountPath, Usage: "`DIR` the local backend mounts under"},
			&cli.StringFlag{Name: "etcd-ca", Usage: "verify etcd's TLS certificate with this CA `FILE` (https:// etcd URLs)"},
			&cli.StringFlag{Name: "etcd-cert", Usage: "client certificate `FILE` for etcd"},
			&cli.StringFlag{Name: "etcd-key", Usage: "the etcd client certificate's key `FILE`"},
			&cli.StringFlag{Name: "prefix", Value: config.DefaultPrefix, Usage: "etcd key `PREFIX`"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve the API over TLS with this certificate `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the TLS certificate's private key `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA `FILE` (mutual TLS)"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "enable the Ceph RBD backend with this ceph.conf `FILE` (its keyring, user admin)"},
			&cli.BoolFlag{Name: "auth", Usage: "require bearer tokens with roles (admin, tenant, host, read-only) on every route but /healthz (/metrics takes a read-only token)"},
			&cli.StringFlag{Name: "bootstrap-token-file", Usage: "with --auth and no admin token yet: write a new admin token to `FILE`, which must not exist (default DATA-DIR/admin.token)"},
			&cli.StringFlag{Name: "audit-log", Usage: "append every audit entry (mutating and refused requests) to `FILE` as a JSON line; reopened when logrotate moves it"},
			&cli.BoolFlag{Name: "insecure-listen-any", Usage: "allow a --listen address beyond loopback without client certificates"},
			&cli.BoolFlag{Name: "debug", Usage: "debug logging (also switched live by the global config's Debug)"},
		},
		Action: cmdutil.Action("volmaster", func(ctx context.Context, c *cli.Context, log *logrus.Logger) error {
			return volmaster.Serve(ctx, volmaster.Options{
				Listen: c.String("listen"), Etcd: c.StringSlice("etcd"),
				EtcdListen: c.String("etcd-listen"), EtcdPeerListen: c.String("etcd-peer-listen"),
				EtcdName: c.String("etcd-name"), EtcdInitialCluster: c.String("etcd-initial-cluster"), EtcdJoin: c.Bool("etcd-join"),
				DataDir: c.String("data-dir"), MountRoot: c.String("mount-root"), Prefix: c.String("prefix"),
				TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), TLSClientCA: c.String("tls-client-ca"),
				CephConf: c.String("ceph-conf"),
				EtcdCA:   c.String("etcd-ca"), EtcdCert: c.String("etcd-cert"), EtcdKey: c.String("etcd-key"),
				InsecureListenAny: c.Bool("insecure-listen-any"), Auth: c.Bool("auth"), BootstrapTokenFile: c.String("bootstrap-token-file"),
				AuditLog:                c.String("audit-log"),
				EtcdCompactionRetention: c.Duration("etcd-compaction-retention"),
				Log:                     log,
				Started: func(api string, etcd []string) {
					fmt.Printf("volmaster API: %s\netcd client URL: %s\n", api, etcd[0])
				},
			})
		}),
		Commands: []*cli.Command{{
			Name:  "etcd-ca",
			Usage: "make the etcd CA that the volmasters of an embedded cluster with --auth share",
			Description: "Writes OUT/ca.crt and OUT/ca.key (0600, never over existing files). Copy both to DATA-DIR/etcd-pki/ of every " +
				"volmaster of the cluster before its first start (over an authenticated channel such as scp; the key lets its holder into etcd), " +
				"then start them with --auth and --etcd-initial-cluster.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Required: true, Usage: "`DIR` to write ca.crt and ca.key to"},
			},
			Action: func(c *cli.Context) error {
				if err := volmaster.NewEtcdClusterCA(c.String("out")); err != nil {
					return err
				}
				fmt.Printf("wrote %s/{ca.crt,ca.key}\n", c.String("out"))
				return nil
			},
		}, {
			Name:  "etcd-client-cert",
			Usage: "issue a client certificate for the embedded etcd of a volmaster run with --auth (for a volsupervisor)",
			Description: "Writes OUT/ca.crt, OUT/NAME.crt and OUT/NAME.key (0600), signed by the CA in DATA-DIR/etcd-pki. " +
				"Give them to volsupervisor as --etcd-ca, --etcd-cert and --etcd-key; revoke by making a new CA (remove etcd-pki and restart).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Value: "/var/lib/volplugin", Usage: "volmaster's data `DIR`"},
				&cli.StringFlag{Name: "name", Required: true, Usage: "the certificate's `NAME` (like volsupervisor-node2)"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "`DIR` to write the files to"},
			},
			Action: func(c *cli.Context) error {
				if err := config.ValidateName("certificate", c.String("name")); err != nil {
					return err
				}
				if err := volmaster.IssueEtcdClientCert(c.String("data-dir"), c.String("name"), c.String("out")); err != nil {
					return err
				}
				fmt.Printf("wrote %s/{ca.crt,%s.crt,%s.key}\n", c.String("out"), c.String("name"), c.String("name"))
				return nil
			},
		}},
	}
	cmdutil.Main(app)
}
