package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/volplugin/volplugin/config"
)

// Importer is what Apply needs of volmaster (internal/client.Client): its
// import routes, each create-if-absent, each with a dry run that reads
// only.
type Importer interface {
	ImportGlobal(ctx context.Context, g config.Global, dryRun bool) (config.ImportResult, error)
	ImportPolicy(ctx context.Context, name string, in config.PolicyImport, dryRun bool) (config.ImportResult, error)
	ImportVolume(ctx context.Context, v config.Volume, dryRun bool) (config.ImportResult, error)
}

// Options change how Apply imports.
type Options struct {
	// DryRun asks volmaster what it would do, writing nothing.
	DryRun bool
	// IgnoreLocks imports although the original's tree holds mount or
	// snapshot locks.
	IgnoreLocks bool
}

// Report says what an import did (or would do) with every record.
type Report struct {
	DryRun bool   `json:"dry-run"`
	Items  []Item `json:"items"`
	// Notes list every field not carried over, and why.
	Notes []Note `json:"not-carried-over"`
	// Locks are the original's locks that were ignored (IgnoreLocks).
	Locks []Lock `json:"ignored-locks,omitempty"`
}

// Item is what became of one record.
type Item struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
	// Detail says more: revisions, image, adopted snapshots, volmaster's
	// notes.
	Detail string `json:"detail,omitempty"`
}

// ErrLocked is returned when the original's tree holds locks: a host may
// still have a volume mounted, or the original's volsupervisor may be
// snapshotting. A kind of config.ErrInUse.
var ErrLocked = fmt.Errorf("the original volplugin's locks are held: %w", config.ErrInUse)

// Apply imports plan through im: first every record as a dry run, so that
// a record volmaster refuses (a policy or volume of the same name that is
// not the original's) stops the import before anything is written; then,
// unless opts.DryRun, for real, global configuration first, then policies,
// then volumes. Each record is written in its own transactions and an
// import run again skips what is there, so an import cut short is finished
// by running it again. A plan with problems, or with the original's locks
// (unless opts.IgnoreLocks), is refused (config.ErrInvalid, ErrLocked)
// with nothing written.
func Apply(ctx context.Context, plan *Plan, im Importer, opts Options) (Report, error) {
	rep := Report{DryRun: opts.DryRun, Notes: plan.Notes}
	if len(plan.Problems) > 0 {
		return rep, fmt.Errorf("the original's tree cannot be imported as it is; nothing was written:\n  %s: %w",
			strings.Join(plan.Problems, "\n  "), config.ErrInvalid)
	}
	if len(plan.Locks) > 0 {
		if !opts.IgnoreLocks {
			var held []string
			for _, l := range plan.Locks {
				held = append(held, describeLock(l))
			}
			return rep, fmt.Errorf("%w: %s; a host may still have a volume mounted: stop the original's volplugin and volsupervisor "+
				"everywhere first (their locks expire with their TTL), or import with --ignore-locks once you know these are stale; nothing was written",
				ErrLocked, strings.Join(held, ", "))
		}
		rep.Locks = plan.Locks
	}
	check, err := run(ctx, plan, im, true)
	if err != nil || opts.DryRun {
		rep.Items = check
		return rep, err
	}
	rep.Items, err = run(ctx, plan, im, false)
	return rep, err
}

func describeLock(l Lock) string {
	s := l.Key
	if l.Host != "" {
		s += " (host " + l.Host + ")"
	}
	return s
}

// run imports every record of plan, stopping at the first error.
func run(ctx context.Context, plan *Plan, im Importer, dryRun bool) ([]Item, error) {
	var items []Item
	fail := func(kind, name string, err error) ([]Item, error) {
		items = append(items, Item{Kind: kind, Name: name, Action: "refused", Detail: err.Error()})
		if dryRun {
			return items, fmt.Errorf("%s %s: %w; nothing was written", kind, name, err)
		}
		return items, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if plan.Global != nil {
		res, err := im.ImportGlobal(ctx, *plan.Global, dryRun)
		if err != nil {
			return fail("global", "config", err)
		}
		g := plan.Global
		items = append(items, Item{Kind: "global", Name: "config", Action: res.Action,
			Detail: join(fmt.Sprintf("TTL %ds, Timeout %dm, Debug %v, MountPath %s", g.TTL, g.Timeout, g.Debug, g.MountPath), res.Notes)})
	}
	for _, p := range plan.Policies {
		res, err := im.ImportPolicy(ctx, p.Name, p.Import, dryRun)
		if err != nil {
			return fail("policy", p.Name, err)
		}
		d := fmt.Sprintf("%d revision(s)", len(p.Import.Revisions))
		if p.Import.Deleted {
			d += ", deleted in the original"
		}
		items = append(items, Item{Kind: "policy", Name: p.Name, Action: res.Action, Detail: join(d, res.Notes)})
	}
	for _, v := range plan.Volumes {
		res, err := im.ImportVolume(ctx, v, dryRun)
		if err != nil {
			return fail("volume", v.Ref().String(), err)
		}
		var d []string
		if v.Image != "" {
			d = append(d, "image "+v.Driver.Pool+"/"+v.Image+" adopted as formatted")
		}
		if src := v.Driver.Options[config.DriverSource]; src != "" {
			d = append(d, "export "+src)
		}
		for _, s := range res.Snapshots {
			d = append(d, fmt.Sprintf("snapshot %q as %s", s.BackendName(), s.Name))
		}
		items = append(items, Item{Kind: "volume", Name: v.Ref().String(), Action: res.Action, Detail: join(strings.Join(d, "; "), res.Notes)})
	}
	return items, nil
}

func join(s string, notes []string) string {
	parts := append([]string{}, notes...)
	if s != "" {
		parts = append([]string{s}, parts...)
	}
	return strings.Join(parts, "; ")
}
