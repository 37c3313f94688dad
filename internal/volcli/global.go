package volcli

import "github.com/urfave/cli/v2"

func globalCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "global",
		Usage: "manage the cluster-wide configuration",
		Subcommands: []*cli.Command{
			{
				Name:   "get",
				Usage:  "print the global configuration",
				Action: e.action(0, globalGet),
			},
			{
				Name:   "upload",
				Usage:  "replace the global configuration (JSON from stdin or --file)",
				Flags:  []cli.Flag{fileFlag()},
				Action: e.action(0, globalUpload),
			},
		},
	}
}

func globalGet(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	g, err := k.api.Global(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return k.printJSON(g)
}

func globalUpload(k *call) error {
	doc, err := k.readDoc(k.c)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	g, err := k.api.PutGlobal(ctx, doc)
	if err != nil {
		return k.fail(err, "")
	}
	return k.done(g, "global configuration uploaded")
}
