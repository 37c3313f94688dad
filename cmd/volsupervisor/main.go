// Command volsupervisor runs volplugin's leader-elected background work.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/cmdutil"
	"github.com/volplugin/volplugin/volsupervisor"
)

func main() {
	host, _ := os.Hostname()
	app := &cli.App{
		Name:  "volsupervisor",
		Usage: "leader-elected scheduled snapshots and pruning for volplugin volumes",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "etcd", EnvVars: []string{"VOLPLUGIN_ETCD"}, Usage: "etcd client `URL`s (volmaster prints its embedded etcd's)"},
			&cli.StringFlag{Name: "etcd-ca", Usage: "verify etcd's TLS certificate with this CA `FILE` (https:// etcd URLs)"},
			&cli.StringFlag{Name: "etcd-cert", Usage: "client certificate `FILE` for etcd"},
			&cli.StringFlag{Name: "etcd-key", Usage: "the etcd client certificate's key `FILE`"},
			&cli.StringFlag{Name: "prefix", Value: config.DefaultPrefix, Usage: "etcd key `PREFIX`"},
			&cli.StringFlag{Name: "name", Value: fmt.Sprintf("%s-%d", host, os.Getpid()), Usage: "this candidate's `NAME` in the election"},
			&cli.StringFlag{Name: "local-data-dir", Value: "/var/lib/volplugin/local", Usage: "the local backend's image `DIR`: volmaster's --data-dir + /local"},
			&cli.StringFlag{Name: "mount-root", Value: config.DefaultMountPath, Usage: "`DIR` volplugin mounts under (mounted volumes are frozen while snapshotted)"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "enable the Ceph RBD backend with this ceph.conf `FILE`"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9007", Usage: "`HOST:PORT` of GET /info (status), /metrics (Prometheus) and /healthz; empty to disable"},
			&cli.StringFlag{Name: "metrics-token-file", Usage: "GET /info and /metrics require the bearer token in `FILE` (else any local user reads them)"},
			&cli.BoolFlag{Name: "debug", Usage: "debug logging"},
		},
		Action: cmdutil.Action("volsupervisor", func(ctx context.Context, c *cli.Context, log *logrus.Logger) error {
			return volsupervisor.Serve(ctx, volsupervisor.Options{
				Etcd: c.StringSlice("etcd"), Prefix: c.String("prefix"), Name: c.String("name"),
				LocalDataDir: c.String("local-data-dir"), MountRoot: c.String("mount-root"), Listen: c.String("listen"), MetricsTokenFile: c.String("metrics-token-file"), Log: log,
				CephConf: c.String("ceph-conf"),
				EtcdCA:   c.String("etcd-ca"), EtcdCert: c.String("etcd-cert"), EtcdKey: c.String("etcd-key"),
				ListenStarted: func(url string) { fmt.Printf("volsupervisor status: %s/info\n", url) },
				Started:       func(name string) { fmt.Printf("volsupervisor: campaigning as %s\n", name) },
			})
		}),
	}
	cmdutil.Main(app)
}
