package volcli

import (
	"fmt"
	"strconv"
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
				Flags:  listFlags(),
				Action: e.action(0, supervisorStatus),
			},
		},
	}
}

func supervisorStatus(k *call) error {
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	sts, err := k.api.Supervisors(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	if len(sts) == 0 && mode != outJSON && mode != outQuiet {
		return k.done(nil, "no volsupervisor is running")
	}
	if err := supervisorListing(sts).show(k, mode); err != nil {
		return err
	}
	if mode != outTable && mode != outWide {
		return nil
	}
	// What an operator must act on follows the table in full.
	var b strings.Builder
	for _, st := range sts {
		for _, u := range st.Unproven {
			b.WriteString(unprovenLine(u) + "\n")
		}
	}
	return k.write(b.String())
}

func supervisorListing(sts []config.SupervisorStatus) listing[config.SupervisorStatus] {
	role := func(st config.SupervisorStatus) string {
		if st.Leading {
			return "LEADER"
		}
		return "standby"
	}
	count := func(f func(config.SupervisorStatus) int) func(config.SupervisorStatus) string {
		return func(st config.SupervisorStatus) string { return strconv.Itoa(f(st)) }
	}
	return listing[config.SupervisorStatus]{
		items: sts,
		name:  func(st config.SupervisorStatus) string { return st.Name },
		line: func(st config.SupervisorStatus) string {
			var b strings.Builder
			fmt.Fprintf(&b, "%s\t%s\tlast run %s\ttaken %d\tpruned %d\tremoved %d\tpurged %d",
				st.Name, role(st), lastRun(st), st.Taken, st.Pruned, st.Removed, st.Purged)
			if st.LastError != "" {
				fmt.Fprintf(&b, "\n  last error: %s", st.LastError)
			}
			for _, d := range st.NextDue {
				fmt.Fprintf(&b, "\n  next snapshot of %s at %s", d.Volume, d.At.UTC().Format(time.RFC3339))
			}
			for _, u := range st.Unproven {
				b.WriteString("\n  " + unprovenLine(u))
			}
			return b.String()
		},
		cols: []column[config.SupervisorStatus]{
			{name: "NAME", val: func(st config.SupervisorStatus) string { return st.Name }},
			{name: "ROLE", val: role},
			{name: "LAST RUN", val: func(st config.SupervisorStatus) string { return stamp(st.LastRun) }},
			{name: "TAKEN", val: count(func(st config.SupervisorStatus) int { return st.Taken })},
			{name: "PRUNED", val: count(func(st config.SupervisorStatus) int { return st.Pruned })},
			{name: "REMOVED", val: count(func(st config.SupervisorStatus) int { return st.Removed })},
			{name: "PURGED", val: count(func(st config.SupervisorStatus) int { return st.Purged })},
			{name: "LAST ERROR", val: func(st config.SupervisorStatus) string { return st.LastError }},
			{name: "NEXT SNAPSHOT", wide: true, val: func(st config.SupervisorStatus) string {
				if len(st.NextDue) == 0 {
					return ""
				}
				d := st.NextDue[0]
				return d.Volume.String() + " at " + stamp(d.At)
			}},
			{name: "KEPT IN USE", wide: true, val: count(func(st config.SupervisorStatus) int { return len(st.Unproven) })},
			{name: "RECORDED EVERY", wide: true, val: func(st config.SupervisorStatus) string {
				if st.StatusRefresh <= 0 {
					return ""
				}
				return st.StatusRefresh.String()
			}},
		},
	}
}

// unprovenLine tells what to do about a volume kept in use until proven
// unmounted.
func unprovenLine(u config.Unproven) string {
	return fmt.Sprintf("kept %s: in use until proven unmounted (last mounted on host %s at %s, no recorded unmount): "+
		"once %s no longer has it mounted, run volcli use force-remove %s",
		u.Volume, u.Host, u.LastMounted.UTC().Format(time.RFC3339), u.Host, u.Volume)
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
	p := k.progress("reclaiming")
	defer p.stop()
	for i, r := range rs {
		if r.Protected {
			lines = append(lines, fmt.Sprintf("kept %s: protected (volcli volume remove --unprotect %s)", r.Volume, r.Volume))
			continue
		}
		if !r.Ready {
			lines = append(lines, fmt.Sprintf("kept %s: %s", r.Volume, r.Reason))
			continue
		}
		p.set(fmt.Sprintf("reclaiming %s (%d of %d)", r.Volume, i+1, len(rs)))
		if _, err := k.api.RemoveVolume(ctx, r.Volume, config.RemoveOptions{}); err != nil {
			return k.fail(fmt.Errorf("reclaim %s: %w", r.Volume, err), "")
		}
		removed = append(removed, r.Volume)
		lines = append(lines, "removed "+r.Volume.String()+" (to the trash)")
	}
	p.stop()
	if k.json {
		return printList(k, removed, nil)
	}
	return printList(k, lines, func(l string) string { return l })
}
