package volcli

import (
	"github.com/urfave/cli/v2"
)

func infoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "info",
		Usage:  "print volmaster's version, Go and kernel versions, counts and global config",
		Action: e.action(0, info),
	}
}

func info(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	raw, err := k.api.Info(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return k.printJSON(raw)
}
