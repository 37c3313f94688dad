// Command volcsi serves the Container Storage Interface (Kubernetes, Swarm)
// for volplugin's volumes: the controller through volmaster, the node
// through volplugin's own mount path, locks and host lease.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/csi"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/cmdutil"
	"github.com/volplugin/volplugin/internal/diag"
	"github.com/volplugin/volplugin/storage/backend/ceph"
	"github.com/volplugin/volplugin/volplugin"
)

func main() {
	host, _ := os.Hostname()
	app := &cli.App{
		Name:  "volcsi",
		Usage: "CSI plugin: volplugin volumes, policies and mount locks for Kubernetes",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint", Value: "unix:///csi/csi.sock", EnvVars: []string{"CSI_ENDPOINT"}, Usage: "CSI `ENDPOINT` to serve: unix:///path"},
			&cli.StringFlag{Name: "mode", Value: "all", Usage: "services to serve: `controller`, node or all"},
			&cli.StringFlag{Name: "driver-name", Value: csi.DefaultDriverName, Usage: "CSI driver `NAME` (CSIDriver and StorageClass provisioner)"},
			&cli.StringFlag{Name: "volmaster", Value: client.DefaultURL, EnvVars: []string{"VOLMASTER"}, Usage: "volmaster API `URL`"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow a plain http:// --volmaster beyond loopback (a trusted network only)"},
			&cli.StringFlag{Name: "host-label", Value: host + "-csi", EnvVars: []string{"VOLCSI_HOST_LABEL"}, Usage: "node: this node's `NAME` in locks and leases, and its CSI node ID (a volplugin on the same host may share it: locks also name the daemon)"},
			&cli.StringFlag{Name: "mount-root", Value: "/var/lib/volplugin/csi/mnt", Usage: "node: `DIR` volumes are mounted under before they are bound to the staging path; never a volplugin's mount root, whose mounts a restart would adopt"},
			&cli.StringFlag{Name: "state-dir", Value: volplugin.DefaultStateDir, Usage: "node: `DIR` for the state file that keeps mounts and queued lock releases across restarts"},
			&cli.StringFlag{Name: "local-data-dir", Value: "/var/lib/volplugin/local", Usage: "node: the local backend's image `DIR`: volmaster's --data-dir + /local"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "node: enable the Ceph RBD backend with this ceph.conf `FILE`"},
			&cli.StringFlag{Name: "ceph-mapper", Value: "auto", Usage: "node: how Ceph images are mapped: `auto`, krbd, nbd or fuse"},
			&cli.StringFlag{Name: "ceph-run-dir", Usage: "node: `DIR` for rbd-fuse mount points and PID files (default " + ceph.DefaultRunDir + ")"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "node: `HOST:PORT` of GET /metrics (Prometheus); empty to disable"},
			&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding a volmaster token (host role for the node, a tenant or admin role for the controller)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "verify volmaster's TLS certificate with this CA `FILE`"},
			&cli.StringFlag{Name: "tls-cert", Usage: "client certificate `FILE` for mutual TLS with volmaster"},
			&cli.StringFlag{Name: "tls-key", Usage: "the client certificate's key `FILE`"},
			&cli.BoolFlag{Name: "debug", Usage: "debug logging"},
		},
		Action: cmdutil.Action("volcsi", func(ctx context.Context, c *cli.Context, log *logrus.Logger) error {
			mode := c.String("mode")
			if mode != "controller" && mode != "node" && mode != "all" {
				return fmt.Errorf("--mode %q: controller, node or all", mode)
			}
			o := volplugin.Options{
				Volmaster: c.String("volmaster"), Insecure: c.Bool("insecure"), PluginName: "volcsi",
				Host: c.String("host-label"), MountRoot: c.String("mount-root"), StateDir: c.String("state-dir"), LocalDataDir: c.String("local-data-dir"),
				CephConf: c.String("ceph-conf"), CephMapper: c.String("ceph-mapper"), CephRunDir: c.String("ceph-run-dir"),
				MetricsListen: c.String("metrics-listen"), Log: log,
				TokenFile: c.String("token-file"), TLSCA: c.String("tls-ca"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"),
			}
			api, err := volplugin.NewClient(o)
			if err != nil {
				return err
			}
			cfg := csi.Config{API: api, DriverName: c.String("driver-name"), Version: diag.Version, Controller: mode != "node", Log: log}
			if mode != "controller" {
				d, stop, err := volplugin.Start(ctx, o)
				if err != nil {
					return err
				}
				defer stop()
				cfg.Node, cfg.LocalDataDir = d, o.LocalDataDir
			}
			srv, err := csi.New(cfg)
			if err != nil {
				return err
			}
			ln, err := csi.Listen(c.String("endpoint"))
			if err != nil {
				return err
			}
			defer os.Remove(ln.Addr().String())
			log.WithFields(logrus.Fields{"endpoint": c.String("endpoint"), "mode": mode, "host": o.Host}).Info("volcsi listening")
			fmt.Printf("volcsi endpoint: %s\n", c.String("endpoint"))
			return srv.Serve(ctx, ln)
		}),
	}
	cmdutil.Main(app)
}
