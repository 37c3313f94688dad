package volcli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func supervisorCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "supervisor",
		Usage: "inspect the volsupervisors",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "show every running volsupervisor: who leads, last run, last error, next snapshots due",
				Description: "The status records are read from etcd. To keep etcd's history from growing, a volsupervisor " +
					"rewrites its record only when something in it changes; while only the last-run time moves, it is " +
					"rewritten every status-refresh (5m by default, shown after the time). So 'last run' may lag that long; " +
					"the volsupervisor's own GET /info (its --listen address) has it live.",
				Action: e.action(0, supervisorStatus),
			},
		},
	}
}

func supervisorStatus(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	sts, err := k.api.Supervisors(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	if k.json {
		return printList(k, sts, nil)
	}
	if len(sts) == 0 {
		return k.done(nil, "no volsupervisor is running")
	}
	var b strings.Builder
	for _, st := range sts {
		role := "standby"
		if st.Leading {
			role = "LEADER"
		}
		fmt.Fprintf(&b, "%s\t%s\tlast run %s\ttaken %d\tpruned %d\tremoved %d\tpurged %d\n",
			st.Name, role, lastRun(st), st.Taken, st.Pruned, st.Removed, st.Purged)
		if st.LastError != "" {
			fmt.Fprintf(&b, "  last error: %s\n", st.LastError)
		}
		for _, d := range st.NextDue {
			fmt.Fprintf(&b, "  next snapshot of %s at %s\n", d.Volume, d.At.UTC().Format(time.RFC3339))
		}
		for _, u := range st.Unproven {
			fmt.Fprintf(&b, "  kept %s: in use until proven unmounted (last mounted on host %s at %s, no recorded unmount): "+
				"once %s no longer has it mounted, run volcli use force-remove %s\n",
				u.Volume, u.Host, u.LastMounted.UTC().Format(time.RFC3339), u.Host, u.Volume)
		}
	}
	return k.done(nil, "%s", strings.TrimSuffix(b.String(), "\n"))
}

// lastRun is a status's last-run time and how often the record is
// refreshed while only that time changes (so how far behind it may be).
func lastRun(st config.SupervisorStatus) string {
	if st.LastRun.IsZero() || st.StatusRefresh <= 0 {
		return when(st.LastRun)
	}
	return when(st.LastRun) + " (recorded every " + st.StatusRefresh.String() + ")"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// volumeReclaim lists (--dry-run) or removes the volumes unused for longer
// than their policy's reclaim.unused-for. Only those ready (proven unmounted
// and without a mount lock for the grace) are removed; the others are listed
// with the reason they are kept.
func volumeReclaim(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	rs, err := k.api.Reclaimable(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	if k.c.Bool("dry-run") {
		return printList(k, rs, func(r config.Reclaimable) string {
			status := "ready"
			switch {
			case r.Protected:
				status = "kept: protected (volcli volume remove --unprotect " + r.Volume.String() + ")"
			case !r.Ready:
				status = "kept: " + r.Reason
			}
			return fmt.Sprintf("%s\tlast used %s\tunused for %s\t%s", r.Volume, when(r.LastUsed), r.UnusedFor, status)
		})
	}
	var removed []config.VolumeRef
	var lines []string
	for _, r := range rs {
		if r.Protected {
			lines = append(lines, fmt.Sprintf("kept %s: protected (volcli volume remove --unprotect %s)", r.Volume, r.Volume))
			continue
		}
		if !r.Ready {
			lines = append(lines, fmt.Sprintf("kept %s: %s", r.Volume, r.Reason))
			continue
		}
		if _, err := k.api.RemoveVolume(ctx, r.Volume, config.RemoveOptions{}); err != nil {
			return k.fail(fmt.Errorf("reclaim %s: %w", r.Volume, err), "")
		}
		removed = append(removed, r.Volume)
		lines = append(lines, "removed "+r.Volume.String()+" (to the trash)")
	}
	if k.json {
		return printList(k, removed, nil)
	}
	return printList(k, lines, func(l string) string { return l })
}
