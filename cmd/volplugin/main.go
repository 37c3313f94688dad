// Command volplugin is the Docker volume plugin of the volplugin suite.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/cmdutil"
	"github.com/volplugin/volplugin/storage/backend/ceph"
	"github.com/volplugin/volplugin/volplugin"
)

func main() {
	host, _ := os.Hostname()
	app := &cli.App{
		Name:  "volplugin",
		Usage: "Docker volume plugin: maps and mounts volplugin volumes on this host under a host lease",
		Flags: withEnv([]cli.Flag{
			&cli.StringSliceFlag{Name: "volmaster", Value: cli.NewStringSlice(client.DefaultURL), EnvVars: []string{"VOLMASTER"}, Usage: "volmaster API `URL`; several (repeated or comma-separated) volmasters of one cluster for failover"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow a plain http:// --volmaster beyond loopback (a trusted network only: tokens and answers cross it unprotected)"},
			&cli.StringFlag{Name: "plugin-name", Value: "volplugin", Usage: "plugin `NAME`: docker volume create -d NAME; socket NAME.sock"},
			&cli.StringFlag{Name: "socket-dir", Value: config.DefaultPluginDir, Usage: "`DIR` for the plugin socket (Docker reads /run/docker/plugins)"},
			&cli.StringFlag{Name: "socket-group", Usage: "`GROUP` (name or ID) that owns the socket with root (mode 0660); default: root's"},
			&cli.StringFlag{Name: "host-label", Value: host, Usage: "this host's `NAME` in locks and leases"},
			&cli.StringFlag{Name: "mount-root", Usage: "`DIR` to mount volumes under (default: the global config's MountPath, /mnt/volplugin)"},
			&cli.StringFlag{Name: "state-dir", Value: volplugin.DefaultStateDir, Usage: "`DIR` for the state file that keeps mounts, their Docker mount IDs and queued lock releases across restarts"},
			&cli.StringFlag{Name: "local-data-dir", Value: "/var/lib/volplugin/local", Usage: "the local backend's image `DIR`: volmaster's --data-dir + /local"},
			&cli.IntFlag{Name: "health-max-mount-failures", Value: 20, Usage: "refuse new mounts after `N` failed mounts in 5 minutes (0: no limit)"},
			&cli.IntFlag{Name: "health-max-renew-failures", Value: 10, Usage: "refuse new mounts after `N` failed lease renewals in 5 minutes (0: no limit)"},
			&cli.IntFlag{Name: "health-max-goroutines", Value: 20000, Usage: "refuse new mounts past `N` goroutines (0: no limit)"},
			&cli.IntFlag{Name: "health-max-fds", Value: 50000, Usage: "refuse new mounts past `N` open files (0: no limit)"},
			&cli.StringFlag{Name: "health-webhook", Usage: "POST the health state to this `URL` when it changes"},
			&cli.BoolFlag{Name: "maintenance", Usage: "keep existing mounts and their locks, refuse new mounts"},
			&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:9006", Usage: "`HOST:PORT` of GET /metrics (Prometheus); empty to disable"},
			&cli.StringFlag{Name: "metrics-token-file", Usage: "GET /metrics requires the bearer token in `FILE` (else any local user reads it)"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "enable the Ceph RBD backend with this ceph.conf `FILE`"},
			&cli.StringFlag{Name: "ceph-mapper", Value: "auto", Usage: "how Ceph images are mapped: `auto`, krbd, nbd or fuse (auto: krbd, else nbd, else rbd-fuse + loop)"},
			&cli.StringFlag{Name: "ceph-run-dir", Usage: "`DIR` for rbd-fuse mount points and PID files (default " + ceph.DefaultRunDir + ")"},
			&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding a host-role token, for a volmaster run with --auth"},
			&cli.StringFlag{Name: "tls-ca", Usage: "verify volmaster's TLS certificate with this CA `FILE`"},
			&cli.StringFlag{Name: "tls-cert", Usage: "client certificate `FILE` for mutual TLS with volmaster"},
			&cli.StringFlag{Name: "tls-key", Usage: "the client certificate's key `FILE`"},
			&cli.BoolFlag{Name: "debug", Usage: "debug logging"},
		}),
		Action: cmdutil.Action("volplugin", func(ctx context.Context, c *cli.Context, log *logrus.Logger) error {
			if c.String("host-label") == "" {
				// An empty VOLPLUGIN_HOST_LABEL (the managed plugin's default) means this host's name.
				_ = c.Set("host-label", host)
			}
			return volplugin.Serve(ctx, volplugin.Options{
				Volmaster: strings.Join(c.StringSlice("volmaster"), ","), Insecure: c.Bool("insecure"), PluginName: c.String("plugin-name"), SocketDir: c.String("socket-dir"), SocketGroup: c.String("socket-group"),
				Host: c.String("host-label"), MountRoot: c.String("mount-root"), StateDir: c.String("state-dir"), LocalDataDir: c.String("local-data-dir"),
				Health: volplugin.HealthLimits{
					MountFailures: c.Int("health-max-mount-failures"), RenewFailures: c.Int("health-max-renew-failures"),
					Goroutines: c.Int("health-max-goroutines"), OpenFDs: c.Int("health-max-fds"), Webhook: c.String("health-webhook"),
				},
				Maintenance: c.Bool("maintenance"), MetricsListen: c.String("metrics-listen"), MetricsTokenFile: c.String("metrics-token-file"), Log: log,
				CephConf: c.String("ceph-conf"), CephMapper: c.String("ceph-mapper"), CephRunDir: c.String("ceph-run-dir"),
				TokenFile: c.String("token-file"), TLSCA: c.String("tls-ca"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"),
				MetricsStarted: func(url string) { fmt.Printf("volplugin metrics: %s\n", url) },
				Started:        func(sock string) { fmt.Printf("volplugin socket: %s\n", sock) },
			})
		}),
	}
	cmdutil.Main(app)
}

// withEnv lets every flag also be set by VOLPLUGIN_<FLAG> (dashes as
// underscores), after any variable of its own (VOLMASTER): the managed Docker
// plugin is configured through settable environment variables, not
// arguments.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		env := "VOLPLUGIN_" + strings.ToUpper(strings.ReplaceAll(f.Names()[0], "-", "_"))
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = append(f.EnvVars, env)
		case *cli.StringSliceFlag:
			f.EnvVars = append(f.EnvVars, env)
		case *cli.IntFlag:
			f.EnvVars = append(f.EnvVars, env)
		case *cli.BoolFlag:
			f.EnvVars = append(f.EnvVars, env)
		}
	}
	return flags
}
