package volcli

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func trashCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "trash",
		Usage: "list, restore or purge removed volumes",
		Description: "A removed volume (volcli volume remove, docker volume rm or prune, volsupervisor reclamation) " +
			"stays in the trash, image and snapshots included, until its policy's trash.retention (default 7 days) " +
			"passes; then volsupervisor purges it. Each entry is named POLICY/NAME and the ID of its removal time, " +
			"so a volume of the same name may be created meanwhile.",
		Subcommands: []*cli.Command{
			{
				Name:         "list",
				Usage:        "list trash entries: all, one policy's or one volume name's",
				ArgsUsage:    "[POLICY | POLICY/NAME]",
				BashComplete: e.complete(argTrashList),
				Action:       e.actionArgs(0, 1, trashList),
			},
			{
				Name:      "restore",
				Usage:     "bring a removed volume back under its name, exactly as it was removed",
				ArgsUsage: "POLICY/NAME [ID]",
				Description: "Without ID the newest entry of that name is restored. Refused while a volume of that " +
					"name exists: remove it (or restore later). Record, runtime options, snapshots and data come back; " +
					"the entry leaves the trash.",
				BashComplete: e.complete(argTrash, argTrashID),
				Action:       e.actionArgs(1, 2, trashRestore),
			},
			{
				Name:         "purge",
				Usage:        "destroy a trash entry and its image for good",
				ArgsUsage:    "POLICY/NAME ID",
				Description:  "There is no undo. A purge interrupted half-way is finished by running it again.",
				BashComplete: e.complete(argTrash, argTrashID),
				Action:       e.action(2, trashPurge),
			},
		},
	}
}

func trashList(k *call) error {
	var ref config.VolumeRef
	if arg := k.c.Args().First(); arg != "" {
		var err error
		if ref, err = config.ParseVolumeRef(arg); err != nil {
			if perr := config.ValidateName("policy", arg); perr != nil {
				return invalid(err)
			}
			ref = config.VolumeRef{Policy: arg}
		}
	}
	ctx, cancel := k.ctx()
	defer cancel()
	entries, err := k.api.Trash(ctx, ref)
	if err != nil {
		return k.fail(err, "")
	}
	return printList(k, entries, func(e config.TrashEntry) string {
		state := "expires " + e.Expires.UTC().Format(time.RFC3339)
		if e.Purging {
			state = "purge started (run purge again to finish it)"
		}
		return fmt.Sprintf("%s\t%s\tremoved %s\tsize %s\t%d snapshots\t%s", e.Ref(), e.ID,
			e.RemovedAt.UTC().Format(time.RFC3339), e.Volume.Create.Size, len(e.Snapshots), state)
	})
}

// trashRefArgs parses POLICY/NAME and ID; without ID (restore), the
// newest entry of that name.
func trashRefArgs(k *call) (config.TrashRef, error) {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return config.TrashRef{}, err
	}
	tref := config.TrashRef{Volume: ref, ID: k.c.Args().Get(1)}
	if tref.ID != "" {
		if err := tref.Validate(); err != nil {
			return config.TrashRef{}, invalid(err)
		}
		return tref, nil
	}
	ctx, cancel := k.ctx()
	defer cancel()
	entries, err := k.api.Trash(ctx, ref)
	if err != nil {
		return config.TrashRef{}, k.fail(err, "")
	}
	if len(entries) == 0 {
		return config.TrashRef{}, &exitError{code: ExitNotFound, msg: fmt.Sprintf("no volume %s in the trash", ref)}
	}
	tref.ID = entries[len(entries)-1].ID
	return tref, nil
}

func trashRestore(k *call) error {
	tref, err := trashRefArgs(k)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	v, err := k.api.RestoreTrash(ctx, tref)
	if err != nil {
		return k.fail(err, fmt.Sprintf("trash entry %s not found", tref))
	}
	return k.done(v, "volume %s restored from the trash (%s)", tref.Volume, tref.ID)
}

func trashPurge(k *call) error {
	tref, err := trashRefArgs(k)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.api.PurgeTrash(ctx, tref); err != nil {
		return k.fail(err, fmt.Sprintf("trash entry %s not found", tref))
	}
	return k.done(map[string]any{"policy": tref.Volume.Policy, "name": tref.Volume.Name, "id": tref.ID, "purged": true},
		"trash entry %s purged", tref)
}
