package volcli

import (
	"fmt"
	"strconv"
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
				Usage:  "list every mount lock: volume, host, mounts, since (plain: POLICY/NAME, host, mount IDs)",
				Flags:  listFlags(),
				Action: e.action(0, useList),
			},
			{
				Name:         "get",
				Usage:        "print one volume's mount lock",
				ArgsUsage:    "POLICY/NAME",
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, useGet),
			},
			{
				Name:      "force-remove",
				Usage:     "break a volume's mount lock and record its unmount (only once its host no longer has it mounted)",
				ArgsUsage: "POLICY/NAME",
				Description: "A volume is in use until proven unmounted: when its host died, lost its lease or was cut off " +
					"with the volume mounted, its lock is gone but no unmount is recorded, and nothing removes it " +
					"(volume remove, reclaim, ephemeral removal). Once you have checked that host (it is gone for good, " +
					"or the volume is not mounted there any more), this records the unmount, breaking the lock if there " +
					"still is one. volume remove works at once afterwards; volsupervisor removes an ephemeral or " +
					"reclaimable volume after twice the TTL without a lock. Fails (not found) when there is neither a " +
					"lock nor a mount without a recorded unmount.",
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, useForceRemove),
			},
		},
	}
}

func noLock(ref config.VolumeRef) string {
	return fmt.Sprintf("mount lock of volume %s not found (the volume is not in use)", ref)
}

func useList(k *call) error {
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	uses, err := k.api.Uses(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return useListing(uses).show(k, mode)
}

func useListing(uses []config.Use) listing[config.Use] {
	ids := func(u config.Use) string { return strings.Join(u.MountIDs, ",") }
	return listing[config.Use]{
		items: uses,
		name:  func(u config.Use) string { return u.Volume.String() },
		line: func(u config.Use) string {
			return fmt.Sprintf("%s\t%s\t%s", u.Volume, u.Hostname, cell(ids(u)))
		},
		cols: []column[config.Use]{
			{name: "VOLUME", val: func(u config.Use) string { return u.Volume.String() }},
			{name: "HOST", val: func(u config.Use) string { return u.Hostname }},
			{name: "MOUNTS", val: func(u config.Use) string { return strconv.Itoa(len(u.MountIDs)) }},
			{name: "SINCE", val: func(u config.Use) string { return stamp(u.Since) }},
			{name: "HOLDER", wide: true, val: func(u config.Use) string { return u.Holder }},
			{name: "LEASE", wide: true, val: func(u config.Use) string {
				if u.Lease == 0 {
					return ""
				}
				return strconv.FormatInt(u.Lease, 10)
			}},
			{name: "MOUNT IDS", wide: true, val: ids},
		},
	}
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
		return k.fail(err, fmt.Sprintf("mount lock of volume %s not found and no mount without a recorded unmount (nothing to do)", ref))
	}
	return k.done(map[string]any{"policy": ref.Policy, "name": ref.Name, "lock-removed": true, "unmount-recorded": true},
		"mount lock of volume %s removed (if there was one) and its unmount recorded", ref)
}
