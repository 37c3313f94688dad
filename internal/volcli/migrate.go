package volcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/migrate"
	"github.com/volplugin/volplugin/internal/migrate/etcdv2"
)

var _ migrate.Importer = (*client.Client)(nil)

// timed bounds each import call by --timeout, not the whole import, which
// makes one call per record.
type timed struct {
	api     *client.Client
	timeout time.Duration
}

func (t timed) ImportGlobal(ctx context.Context, g config.Global, dryRun bool) (config.ImportResult, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.api.ImportGlobal(ctx, g, dryRun)
}

func (t timed) ImportPolicy(ctx context.Context, name string, in config.PolicyImport, dryRun bool) (config.ImportResult, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.api.ImportPolicy(ctx, name, in, dryRun)
}

func (t timed) ImportVolume(ctx context.Context, v config.Volume, dryRun bool) (config.ImportResult, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.api.ImportVolume(ctx, v, dryRun)
}

func migrateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "bring another installation's records over",
		Subcommands: []*cli.Command{{
			Name:  "from-contiv",
			Usage: "import the original volplugin's policies, global config and volumes (its etcd v2 tree)",
			Description: "Reads the original's tree (--etcd, its live etcd's v2 API, or --file, a dump of it) and imports it " +
				"through volmaster's import routes (an admin token with --auth): the global config (its durations converted; " +
				"kept if one is stored here), every policy with its archived revisions (oldest first), and every volume with its " +
				"own policy copy and runtime. A Ceph volume adopts its image under the original's name (<policy>.<volume>) as " +
				"formatted, and its RBD snapshots as its snapshots: nothing is copied, renamed or formatted. Every field not " +
				"carried over is listed with why. Refused (nothing written) while the tree holds the original's mount or snapshot " +
				"locks, unless --ignore-locks, and when a policy or volume of the same name is here but not the original's. " +
				"Running it again writes nothing new.",
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "etcd", Usage: "the original's etcd client `URL` (repeat for several)"},
				&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read a dump `FILE` (GET /v2/keys/PREFIX?recursive=true&sorted=true) instead of --etcd"},
				&cli.StringFlag{Name: "prefix", Value: migrate.DefaultPrefix, Usage: "the original's etcd key `PREFIX`"},
				&cli.StringFlag{Name: "etcd-ca", Usage: "verify the original's etcd with this CA `FILE` (https:// URLs)"},
				&cli.StringFlag{Name: "etcd-cert", Usage: "client certificate `FILE` for the original's etcd"},
				&cli.StringFlag{Name: "etcd-key", Usage: "the etcd client certificate's key `FILE`"},
				&cli.BoolFlag{Name: "dry-run", Usage: "print what would be imported and what is not carried over; write nothing"},
				&cli.BoolFlag{Name: "ignore-locks", Usage: "import although the original's tree holds mount locks (users/mount/...): only once its volplugins are stopped"},
			},
			Action: e.action(0, migrateFromContiv),
		}},
	}
}

func migrateFromContiv(k *call) error {
	tree, err := readTree(k)
	if err != nil {
		return err
	}
	plan := migrate.Convert(tree, time.Now())
	ctx := k.c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	rep, err := migrate.Apply(ctx, plan, timed{api: k.api, timeout: k.timeout}, migrate.Options{DryRun: k.c.Bool("dry-run"), IgnoreLocks: k.c.Bool("ignore-locks")})
	if perr := k.printReport(rep); perr != nil && err == nil {
		return perr
	}
	if err != nil {
		if errors.Is(err, migrate.ErrLocked) || len(plan.Problems) > 0 {
			return &exitError{code: exitCode(err), msg: cleanMessage(err)}
		}
		return k.fail(err, "")
	}
	return nil
}

func readTree(k *call) (migrate.Tree, error) {
	endpoints, file := k.c.StringSlice("etcd"), k.c.String("file")
	if (len(endpoints) == 0) == (file == "") {
		return nil, usageErrorf("give the original's etcd (--etcd URL) or a dump of it (--file FILE)")
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		defer f.Close()
		t, err := migrate.ReadDump(f, k.c.String("prefix"))
		if err != nil {
			return nil, &exitError{code: exitCode(err), msg: cleanMessage(err)}
		}
		return t, nil
	}
	cfg := etcdv2.Config{Endpoints: endpoints, Prefix: k.c.String("prefix"), Timeout: k.timeout}
	if ca, cert, key := k.c.String("etcd-ca"), k.c.String("etcd-cert"), k.c.String("etcd-key"); ca != "" || cert != "" || key != "" {
		tc, err := client.TLSConfig(ca, cert, key)
		if err != nil {
			return nil, &exitError{code: exitCode(err), msg: err.Error()}
		}
		cfg.TLS = tc
	}
	ctx, cancel := k.ctx()
	defer cancel()
	t, err := etcdv2.Read(ctx, cfg)
	if err != nil {
		return nil, &exitError{code: exitCode(err), msg: cleanMessage(err)}
	}
	return t, nil
}

// printReport prints the import's items and every field not carried over
// (JSON with --json).
func (k *call) printReport(rep migrate.Report) error {
	if k.json {
		if rep.Items == nil {
			rep.Items = []migrate.Item{}
		}
		if rep.Notes == nil {
			rep.Notes = []migrate.Note{}
		}
		return k.printJSON(rep)
	}
	var b strings.Builder
	if rep.DryRun {
		b.WriteString("dry run: nothing was written\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, it := range rep.Items {
		action := it.Action
		if rep.DryRun && action == config.ImportCreated {
			action = "would create"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Kind, it.Name, action, it.Detail)
	}
	_ = tw.Flush()
	for _, l := range rep.Locks {
		fmt.Fprintf(&b, "ignored lock: %s (host %q)\n", l.Key, l.Host)
	}
	if len(rep.Notes) > 0 {
		b.WriteString("not carried over (or changed):\n")
		for _, n := range rep.Notes {
			b.WriteString("  " + n.String() + "\n")
		}
	}
	if _, err := fmt.Fprint(k.stdout, b.String()); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("write output: %v", err)}
	}
	return nil
}
