package volcli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func volumeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "manage volumes and their snapshots",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a volume from its policy",
				ArgsUsage: "POLICY/NAME",
				Description: "Each --opt KEY=VALUE overrides the policy for the new volume. Keys: " +
					strings.Join(config.VolumeOptions(), ", ") + ".",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "opt", Aliases: []string{"o"}, Usage: "volume option `KEY=VALUE` (repeatable)"},
				},
				Action: e.action(1, volumeCreate),
			},
			{
				Name:      "get",
				Usage:     "print a volume's record",
				ArgsUsage: "POLICY/NAME",
				Action:    e.action(1, volumeGet),
			},
			{
				Name:      "list",
				Usage:     "list the volumes of one policy (one name a line)",
				ArgsUsage: "POLICY",
				Action:    e.action(1, volumeList),
			},
			{
				Name:   "list-all",
				Usage:  "list every volume (one POLICY/NAME a line)",
				Action: e.action(0, volumeListAll),
			},
			{
				Name:      "resize",
				Usage:     "grow a volume to SIZE (like 2GiB), mounted or not",
				ArgsUsage: "POLICY/NAME SIZE",
				Description: "The image grows at once. A mounted volume's filesystem is grown online by the host " +
					"that mounts it; an unmounted one's offline (local ext4) or at the next mount. Volumes only " +
					"grow; the same size again finishes a grow that failed half-way. If the image grew but its " +
					"filesystem did not, the command fails saying so, and the record already has the new size " +
					"(the image cannot shrink back); the filesystem then grows at the next mount or with the " +
					"same resize again.",
				Action: e.action(2, volumeResize),
			},
			{
				Name:      "remove",
				Usage:     "move a volume to the trash (restorable until its policy's trash.retention passes)",
				ArgsUsage: "POLICY/NAME",
				Description: "The image (with its snapshots) goes to the backend's trash and the whole record to a trash " +
					"entry: volcli volume trash list|restore|purge. An ephemeral volume is destroyed at once. Refused " +
					"while the volume is mounted, and while its last mount has no recorded unmount (its host died, lost " +
					"its lease or was cut off: the error names the host); once that host no longer has it mounted, volcli " +
					"use force-remove records the unmount. A protected volume (protect=true) is refused unless " +
					"--unprotect is given; docker volume rm and prune never remove one. With --force every record of the " +
					"volume (snapshot records, usage, runtime) is deleted in one transaction, mounted or not, nothing " +
					"goes to the trash and the image stays in the backend.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Usage: "remove only the records, leave the storage alone (no trash)"},
					&cli.BoolFlag{Name: "unprotect", Usage: "remove the volume even though it is protected"},
				},
				Action: e.action(1, volumeRemove),
			},
			trashCommand(e),
			{
				Name:  "reclaim",
				Usage: "remove the volumes unused for longer than their policy's reclaim.unused-for",
				Description: "With --dry-run, only list them, with ephemeral volumes kept as in use until proven " +
					"unmounted. Only a volume ready to go is removed: no mount lock, never mounted or its last mount " +
					"has a recorded unmount and twice the TTL without a lock since. The others are listed as kept, " +
					"with the reason (a host that died with the volume mounted is named, with the volcli use " +
					"force-remove command that records the unmount once you have checked it). volsupervisor removes " +
					"them by itself where the policy sets reclaim.enabled.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "dry-run", Usage: "list, do not remove"},
				},
				Action: e.action(0, volumeReclaim),
			},
			{
				Name:  "runtime",
				Usage: "inspect or change a volume's runtime options",
				Subcommands: []*cli.Command{
					{
						Name:      "get",
						Usage:     "print a volume's runtime options",
						ArgsUsage: "POLICY/NAME",
						Action:    e.action(1, runtimeGet),
					},
					{
						Name:      "upload",
						Usage:     "replace a volume's runtime options (JSON from stdin or --file)",
						ArgsUsage: "POLICY/NAME",
						Flags:     []cli.Flag{fileFlag()},
						Action:    e.action(1, runtimeUpload),
					},
				},
			},
			snapshotCommand(e),
		},
	}
}

func volumeNotFound(ref config.VolumeRef) string { return fmt.Sprintf("volume %s not found", ref) }

// parseOpts turns repeated KEY=VALUE options into a map.
func parseOpts(opts []string) (map[string]string, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(opts))
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usageErrorf("option %q must be KEY=VALUE", o)
		}
		if _, dup := out[k]; dup {
			return nil, usageErrorf("option %s is given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func volumeCreate(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	opts, err := parseOpts(k.c.StringSlice("opt"))
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	v, err := k.api.CreateVolume(ctx, config.VolumeRequest{Policy: ref.Policy, Name: ref.Name, Options: opts})
	if err != nil {
		// The volume cannot be missing; its policy can.
		return k.fail(err, policyNotFound(ref.Policy))
	}
	return k.done(v, "volume %s created", ref)
}

func volumeGet(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	v, err := k.api.Volume(ctx, ref)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	return k.printJSON(v)
}

func volumeList(k *call) error {
	policy, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	refs, err := k.api.Volumes(ctx, policy)
	if err != nil {
		return k.fail(err, policyNotFound(policy))
	}
	return printList(k, refs, func(r config.VolumeRef) string { return r.Name })
}

func volumeListAll(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	refs, err := k.api.Volumes(ctx, "")
	if err != nil {
		return k.fail(err, "")
	}
	return printList(k, refs, config.VolumeRef.String)
}

func volumeRemove(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	opts := config.RemoveOptions{Force: k.c.Bool("force"), Unprotect: k.c.Bool("unprotect")}
	ctx, cancel := k.ctx()
	defer cancel()
	e, err := k.api.RemoveVolume(ctx, ref, opts)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	out := map[string]any{"policy": ref.Policy, "name": ref.Name, "removed": true, "force": opts.Force}
	if e == nil {
		return k.done(out, "volume %s removed", ref)
	}
	out["trash"] = e
	return k.done(out, "volume %s moved to the trash as %s until %s (volcli volume trash restore %s %s)",
		ref, e.ID, e.Expires.Format(time.RFC3339), ref, e.ID)
}

func volumeResize(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	size := k.c.Args().Get(1)
	if _, err := config.ParseSize(size); err != nil {
		return invalid(err)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	v, err := k.api.ResizeVolume(ctx, ref, size)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	return k.done(v, "volume %s resized to %s", ref, v.Create.Size)
}

func runtimeGet(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	rt, err := k.api.Runtime(ctx, ref)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	return k.printJSON(rt)
}

func runtimeUpload(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	doc, err := k.readDoc(k.c)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	rt, err := k.api.PutRuntime(ctx, ref, doc)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	return k.done(rt, "runtime options of volume %s uploaded", ref)
}
