package volcli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
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
				BashComplete: e.complete(argNewVolume),
				Action:       e.action(1, volumeCreate),
			},
			{
				Name:         "get",
				Usage:        "print a volume's record",
				ArgsUsage:    "POLICY/NAME",
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, volumeGet),
			},
			{
				Name:         "list",
				Usage:        "list the volumes of one policy: a table on a terminal, else one name a line",
				ArgsUsage:    "POLICY",
				Flags:        listFlags(),
				BashComplete: e.complete(argPolicy),
				Action:       e.action(1, volumeList),
			},
			{
				Name:   "list-all",
				Usage:  "list every volume: a table on a terminal, else one POLICY/NAME a line",
				Flags:  listFlags(),
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
				BashComplete: e.complete(argVolume),
				Action:       e.action(2, volumeResize),
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
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, volumeRemove),
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
						Name:         "get",
						Usage:        "print a volume's runtime options",
						ArgsUsage:    "POLICY/NAME",
						BashComplete: e.complete(argVolume),
						Action:       e.action(1, runtimeGet),
					},
					{
						Name:         "upload",
						Usage:        "replace a volume's runtime options (JSON from stdin or --file)",
						ArgsUsage:    "POLICY/NAME",
						Flags:        []cli.Flag{fileFlag()},
						BashComplete: e.complete(argVolume),
						Action:       e.action(1, runtimeUpload),
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
	return k.listVolumes(policy)
}

func volumeListAll(k *call) error { return k.listVolumes("") }

// listVolumes lists the volumes of policy (all if ""). Names need one call;
// a table needs the full records and the mount locks: two calls whatever the
// number of volumes, both answered from volmaster's cache or one etcd range.
func (k *call) listVolumes(policy string) error {
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	notFound := ""
	if policy != "" {
		notFound = policyNotFound(policy)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if mode != outTable && mode != outWide {
		refs, err := k.api.Volumes(ctx, policy)
		if err != nil {
			return k.fail(err, notFound)
		}
		name := config.VolumeRef.String
		if policy != "" {
			name = func(r config.VolumeRef) string { return r.Name }
		}
		return listing[config.VolumeRef]{items: refs, name: name, line: name}.show(k, mode)
	}
	vols, err := k.api.VolumesDetail(ctx, policy)
	if err != nil {
		return k.fail(err, notFound)
	}
	uses, err := k.api.Uses(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return volumeListing(vols, uses, policy == "").show(k, mode)
}

// volumeRow is a volume with its mount lock, if any.
type volumeRow struct {
	config.Volume
	use *config.Use
}

// volumeListing is the table of volume list (all: list-all, named by
// POLICY/NAME).
func volumeListing(vols []config.Volume, uses []config.Use, all bool) listing[volumeRow] {
	byRef := make(map[config.VolumeRef]*config.Use, len(uses))
	for i := range uses {
		byRef[uses[i].Volume] = &uses[i]
	}
	rows := make([]volumeRow, len(vols))
	for i, v := range vols {
		rows[i] = volumeRow{Volume: v, use: byRef[v.Ref()]}
	}
	name := func(r volumeRow) string { return r.Name }
	if all {
		name = func(r volumeRow) string { return r.Ref().String() }
	}
	return listing[volumeRow]{items: rows, name: name, line: name, cols: []column[volumeRow]{
		{name: "VOLUME", val: name},
		{name: "SIZE", val: func(r volumeRow) string { return r.Create.Size }},
		{name: "BACKEND", val: func(r volumeRow) string { return backendName(r.Backends) }},
		{name: "HOST", val: func(r volumeRow) string {
			if r.use == nil {
				return ""
			}
			return r.use.Hostname
		}},
		{name: "MOUNTED SINCE", val: func(r volumeRow) string {
			if r.use == nil {
				return ""
			}
			return stamp(r.use.Since)
		}},
		{name: "MOUNTS", wide: true, val: func(r volumeRow) string {
			if r.use == nil {
				return "0"
			}
			return strconv.Itoa(len(r.use.MountIDs))
		}},
		{name: "FILESYSTEM", wide: true, val: func(r volumeRow) string { return r.Create.Filesystem }},
		{name: "POOL", wide: true, val: func(r volumeRow) string { return r.Driver.Pool }},
		{name: "SNAPSHOTS", wide: true, val: func(r volumeRow) string { return snapshotSchedule(r.Runtime) }},
		{name: "RATE LIMIT", wide: true, val: func(r volumeRow) string { return rateLimit(r.Runtime.RateLimit) }},
		{name: "FLAGS", wide: true, val: func(r volumeRow) string { return volumeFlags(r.Volume) }},
		{name: "CREATED", wide: true, val: func(r volumeRow) string { return stamp(r.CreatedAt) }},
	}}
}

// backendName is a volume's backend: one name when one backend does
// everything, else crud/mount/snapshot.
func backendName(b config.Backends) string {
	if (b.CRUD == "" || b.CRUD == b.Mount) && (b.Snapshot == "" || b.Snapshot == b.Mount) {
		return b.Mount
	}
	return cell(b.CRUD) + "/" + cell(b.Mount) + "/" + cell(b.Snapshot)
}

// snapshotSchedule is "every FREQ, keep N" (plus tiers), or "off".
func snapshotSchedule(rt config.RuntimeOptions) string {
	s := rt.Snapshot
	if !rt.Snapshots || s.Frequency <= 0 {
		return "off"
	}
	out := "every " + s.Frequency.String()
	if s.Keep > 0 {
		out += fmt.Sprintf(", keep %d", s.Keep)
	}
	for _, t := range []struct {
		n    uint
		unit string
	}{{s.Tiers.Hourly, "hourly"}, {s.Tiers.Daily, "daily"}, {s.Tiers.Weekly, "weekly"}} {
		if t.n > 0 {
			out += fmt.Sprintf(", %d %s", t.n, t.unit)
		}
	}
	return out
}

// rateLimit lists the limits that are set ("" for none).
func rateLimit(l config.RateLimit) string {
	var parts []string
	if l.ReadBPS > 0 {
		parts = append(parts, "read "+units.BytesSize(float64(l.ReadBPS))+"/s")
	}
	if l.WriteBPS > 0 {
		parts = append(parts, "write "+units.BytesSize(float64(l.WriteBPS))+"/s")
	}
	if l.ReadIOPS > 0 {
		parts = append(parts, fmt.Sprintf("read %d IOPS", l.ReadIOPS))
	}
	if l.WriteIOPS > 0 {
		parts = append(parts, fmt.Sprintf("write %d IOPS", l.WriteIOPS))
	}
	return strings.Join(parts, ", ")
}

func volumeFlags(v config.Volume) string {
	var f []string
	for _, x := range []struct {
		set  bool
		name string
	}{{v.Protect, "protected"}, {v.Ephemeral, "ephemeral"}, {v.Unlocked, "unlocked"}, {v.NoExec, "noexec"}} {
		if x.set {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ",")
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
	p := k.progress(fmt.Sprintf("growing %s to %s", ref, size))
	v, err := k.api.ResizeVolume(ctx, ref, size)
	p.stop()
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
