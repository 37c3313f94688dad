package volcli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func useCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "use",
		Usage: "inspect or break mount locks",
		Subcommands: []*cli.Command{
			{
				Name:   "list",
				Usage:  "list every mount lock (POLICY/NAME, host, mount IDs)",
				Action: e.action(0, useList),
			},
			{
				Name:      "get",
				Usage:     "print one volume's mount lock",
				ArgsUsage: "POLICY/NAME",
				Action:    e.action(1, useGet),
			},
			{
				Name:      "force-remove",
				Usage:     "break a volume's mount lock (only if its host is gone for good)",
				ArgsUsage: "POLICY/NAME",
				Action:    e.action(1, useForceRemove),
			},
		},
	}
}

func noLock(ref config.VolumeRef) string {
	return fmt.Sprintf("mount lock of volume %s not found (the volume is not in use)", ref)
}

func useList(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	uses, err := k.api.Uses(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return printList(k, uses, func(u config.Use) string {
		ids := strings.Join(u.MountIDs, ",")
		if ids == "" {
			ids = "-"
		}
		return fmt.Sprintf("%s\t%s\t%s", u.Volume, u.Hostname, ids)
	})
}

func useGet(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	u, err := k.api.Use(ctx, ref)
	if err != nil {
		return k.fail(err, noLock(ref))
	}
	return k.printJSON(u)
}

func useForceRemove(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.api.RemoveUse(ctx, ref); err != nil {
		return k.fail(err, noLock(ref))
	}
	return k.done(map[string]any{"policy": ref.Policy, "name": ref.Name, "lock-removed": true},
		"mount lock of volume %s removed", ref)
}
