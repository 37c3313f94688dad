package volcli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

// Flags of "volume snapshot take".
const (
	flagExec  = "exec"
	flagAfter = "after"
)

// hookWaitDelay bounds how long a hook command that has exited (or been
// killed at --timeout) may keep its output open, e.g. through a child left
// running in the background.
const hookWaitDelay = 5 * time.Second

func snapshotCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "take, list or copy a volume's snapshots",
		Subcommands: []*cli.Command{
			{
				Name:      "take",
				Usage:     "take a snapshot of a volume now and print its name",
				ArgsUsage: "POLICY/NAME",
				Description: "The snapshot is pruned by the volume's keep count like a scheduled one.\n\n" +
					"For a consistent snapshot, --exec runs a command first (a database flush or freeze, say):\n" +
					"the snapshot is taken only if it exits 0, otherwise volcli exits 1 and takes none.\n" +
					"--after runs once the snapshot was attempted, taken or not (but only if --exec, when given,\n" +
					"succeeded), e.g. to thaw what --exec froze. If --after fails once the snapshot was taken,\n" +
					"volcli prints the snapshot's name but exits 1. Both commands run on this host through\n" +
					"/bin/sh -c, exactly as given, each bounded by --timeout, with their output on stderr;\n" +
					"neither runs if the volume does not exist.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flagExec, Usage: "run `CMD` (through /bin/sh -c) first; take the snapshot only if it succeeds"},
					&cli.StringFlag{Name: flagAfter, Usage: "run `CMD` (through /bin/sh -c) after the snapshot attempt; exit 1 if it fails"},
				},
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, snapshotTake),
			},
			{
				Name:         "list",
				Usage:        "list a volume's snapshots, oldest first (name, time, taken by, method and freeze)",
				ArgsUsage:    "POLICY/NAME",
				Flags:        listFlags(),
				BashComplete: e.complete(argVolume),
				Action:       e.action(1, snapshotList),
			},
			{
				Name:         "copy",
				Usage:        "create volume POLICY/NEWNAME from snapshot SNAP of POLICY/NAME",
				ArgsUsage:    "POLICY/NAME SNAP NEWNAME",
				Description:  "SNAP is a name printed by 'volume snapshot list'. The new volume is in the same policy.",
				BashComplete: e.complete(argVolume, argSnapshot),
				Action:       e.action(3, snapshotCopy),
			},
		},
	}
}

// hookFlag returns the command of --exec or --after ("" if not given); a
// given but empty command is a usage error.
func hookFlag(c *cli.Context, name string) (string, error) {
	cmd := c.String(name)
	if c.IsSet(name) && strings.TrimSpace(cmd) == "" {
		return "", usageErrorf("--%s command is empty", name)
	}
	return cmd, nil
}

// runHook runs a user's --exec or --after command through /bin/sh -c,
// bounded by --timeout, with its output on volcli's stderr. It returns why
// the command failed ("exit status 1", "timed out after 2m0s"), or "".
func (k *call) runHook(parent context.Context, command string) string {
	ctx, cancel := context.WithTimeout(parent, k.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = k.stderr, k.stderr
	cmd.WaitDelay = hookWaitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: the command exited 0 but something it started
		// still holds its output.
		return ""
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("timed out after %s", k.timeout)
	case errors.As(err, &ee):
		return ee.Error()
	default:
		return fmt.Sprintf("could not start: %v", err)
	}
}

func snapshotTake(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	before, err := hookFlag(k.c, flagExec)
	if err != nil {
		return err
	}
	after, err := hookFlag(k.c, flagAfter)
	if err != nil {
		return err
	}
	parent := k.c.Context
	if parent == nil {
		parent = context.Background()
	}
	if before != "" || after != "" {
		// Run nothing (freeze no database) for a volume that is not there.
		ctx, cancel := k.ctx()
		_, err := k.api.Volume(ctx, ref)
		cancel()
		if err != nil {
			return k.fail(err, volumeNotFound(ref))
		}
	}
	if before != "" {
		if why := k.runHook(parent, before); why != "" {
			return &exitError{code: ExitError, msg: fmt.Sprintf("--exec command failed (%s): no snapshot taken", why)}
		}
	}
	ctx, cancel := k.ctx()
	p := k.progress("taking a snapshot of " + ref.String())
	snap, err := k.api.TakeSnapshot(ctx, ref)
	p.stop()
	cancel()
	takeErr := k.fail(err, volumeNotFound(ref))
	if after != "" {
		// The --after command runs even if volcli was interrupted: it may
		// have to thaw what --exec froze.
		if why := k.runHook(context.WithoutCancel(parent), after); why != "" {
			var ee *exitError
			if errors.As(takeErr, &ee) {
				return &exitError{code: ee.code, msg: fmt.Sprintf("%s; --after command failed too (%s)", ee.msg, why)}
			}
			// The snapshot exists: say so on stdout as on success.
			if err := k.done(snap, "%s", snap.Name); err != nil {
				return err
			}
			return &exitError{code: ExitError, msg: fmt.Sprintf("snapshot %s of volume %s taken, but --after command failed (%s)", snap.Name, ref, why)}
		}
	}
	if takeErr != nil {
		return takeErr
	}
	return k.done(snap, "%s", snap.Name)
}

func snapshotList(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	snaps, err := k.api.Snapshots(ctx, ref)
	if err != nil {
		return k.fail(err, volumeNotFound(ref))
	}
	return snapshotListing(snaps).show(k, mode)
}

func snapshotListing(snaps []config.Snapshot) listing[config.Snapshot] {
	frozen := func(s config.Snapshot) string {
		if s.FrozenMS <= 0 {
			return ""
		}
		return fmt.Sprintf("%d ms", s.FrozenMS)
	}
	return listing[config.Snapshot]{
		items: snaps,
		name:  func(s config.Snapshot) string { return s.Name },
		line: func(s config.Snapshot) string {
			how := cell(s.Method)
			if s.FrozenMS > 0 {
				how += fmt.Sprintf(" (frozen %d ms)", s.FrozenMS)
			}
			if s.Backend != "" {
				how += fmt.Sprintf(" (backend name %q)", s.Backend)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s", s.Name, s.Time.UTC().Format(time.RFC3339), cell(s.By), how)
		},
		cols: []column[config.Snapshot]{
			{name: "SNAPSHOT", val: func(s config.Snapshot) string { return s.Name }},
			{name: "TAKEN", val: func(s config.Snapshot) string { return stamp(s.Time) }},
			{name: "BY", val: func(s config.Snapshot) string { return s.By }},
			{name: "METHOD", wide: true, val: func(s config.Snapshot) string { return s.Method }},
			{name: "FROZEN", wide: true, val: frozen},
			{name: "BACKEND NAME", wide: true, val: func(s config.Snapshot) string { return s.Backend }},
		},
	}
}

func snapshotCopy(k *call) error {
	ref, err := refArg(k.c, 0)
	if err != nil {
		return err
	}
	snap := k.c.Args().Get(1)
	if _, err := config.ParseSnapshotName(snap); err != nil {
		return invalid(err)
	}
	newName := k.c.Args().Get(2)
	if strings.Contains(newName, "/") {
		return usageErrorf("NEWNAME %q must be a plain volume name: the copy is always in policy %s", newName, ref.Policy)
	}
	to := config.VolumeRef{Policy: ref.Policy, Name: newName}
	if err := to.Validate(); err != nil {
		return invalid(err)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	p := k.progress(fmt.Sprintf("copying snapshot %s of %s to %s", snap, ref, to))
	v, err := k.api.CopySnapshot(ctx, ref, snap, to.Name)
	p.stop()
	if err != nil {
		return k.fail(err, fmt.Sprintf("snapshot %s of volume %s not found", snap, ref))
	}
	return k.done(v, "volume %s created from %s", to, snap)
}
