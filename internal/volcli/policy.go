package volcli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func policyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "manage policies (templates for volumes)",
		Subcommands: []*cli.Command{
			{
				Name:         "upload",
				Usage:        "upload a policy as a new revision (JSON from stdin or --file)",
				ArgsUsage:    "NAME",
				Flags:        []cli.Flag{fileFlag()},
				BashComplete: e.complete(argPolicy),
				Action:       e.action(1, policyUpload),
			},
			{
				Name:         "get",
				Usage:        "print the current version of a policy",
				ArgsUsage:    "NAME",
				BashComplete: e.complete(argPolicy),
				Action:       e.action(1, policyGet),
			},
			{
				Name:   "list",
				Usage:  "list policies: a table on a terminal, else one name a line",
				Flags:  listFlags(),
				Action: e.action(0, policyList),
			},
			{
				Name:         "delete",
				Usage:        "delete a policy (its volumes and history stay)",
				ArgsUsage:    "NAME",
				BashComplete: e.complete(argPolicy),
				Action:       e.action(1, policyDelete),
			},
			{
				Name:  "history",
				Usage: "inspect the revisions of a policy",
				Subcommands: []*cli.Command{
					{
						Name:         "list",
						Usage:        "list the revisions of a policy (number and upload time)",
						ArgsUsage:    "NAME",
						BashComplete: e.complete(argPolicy),
						Action:       e.action(1, policyHistoryList),
					},
					{
						Name:         "get",
						Usage:        "print one revision of a policy",
						ArgsUsage:    "NAME REVISION",
						BashComplete: e.complete(argPolicy),
						Action:       e.action(2, policyHistoryGet),
					},
				},
			},
		},
	}
}

func policyNotFound(name string) string { return fmt.Sprintf("policy %s not found", name) }

func policyUpload(k *call) error {
	name, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	doc, err := k.readDoc(k.c)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	p, rev, err := k.api.PutPolicy(ctx, name, doc)
	if err != nil {
		return k.fail(err, "")
	}
	return k.done(p, "policy %s uploaded (revision %d)", name, rev)
}

func policyGet(k *call) error {
	name, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	p, err := k.api.Policy(ctx, name)
	if err != nil {
		return k.fail(err, policyNotFound(name))
	}
	return k.printJSON(p)
}

func policyList(k *call) error {
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if mode != outTable && mode != outWide {
		names, err := k.api.Policies(ctx)
		if err != nil {
			return k.fail(err, "")
		}
		self := func(s string) string { return s }
		return listing[string]{items: names, name: self, line: self}.show(k, mode)
	}
	pols, err := k.api.PoliciesDetail(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return policyListing(pols).show(k, mode)
}

func policyListing(pols []config.Policy) listing[config.Policy] {
	name := func(p config.Policy) string { return p.Name }
	return listing[config.Policy]{items: pols, name: name, line: name, cols: []column[config.Policy]{
		{name: "POLICY", val: name},
		{name: "BACKEND", val: func(p config.Policy) string { return backendName(p.Backends) }},
		{name: "SIZE", val: func(p config.Policy) string { return p.Create.Size }},
		{name: "FILESYSTEM", val: func(p config.Policy) string { return p.Create.Filesystem }},
		{name: "SNAPSHOTS", val: func(p config.Policy) string { return snapshotSchedule(p.Runtime) }},
		{name: "POOL", wide: true, val: func(p config.Policy) string { return p.Driver.Pool }},
		{name: "RATE LIMIT", wide: true, val: func(p config.Policy) string { return rateLimit(p.Runtime.RateLimit) }},
		{name: "RECLAIM", wide: true, val: func(p config.Policy) string {
			switch {
			case p.Reclaim.UnusedFor <= 0:
				return ""
			case p.Reclaim.Enabled:
				return "after " + p.Reclaim.UnusedFor.String()
			default:
				return "report after " + p.Reclaim.UnusedFor.String()
			}
		}},
		{name: "FLAGS", wide: true, val: func(p config.Policy) string {
			return volumeFlags(config.Volume{Protect: p.Protect, Ephemeral: p.Ephemeral, Unlocked: p.Unlocked, NoExec: p.NoExec})
		}},
	}}
}

func policyDelete(k *call) error {
	name, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.api.DeletePolicy(ctx, name); err != nil {
		return k.fail(err, policyNotFound(name))
	}
	return k.done(map[string]any{"policy": name, "deleted": true}, "policy %s deleted", name)
}

func policyHistoryList(k *call) error {
	name, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	revs, err := k.api.PolicyRevisions(ctx, name)
	if err != nil {
		return k.fail(err, policyNotFound(name))
	}
	return printList(k, revs, func(r config.PolicyRevision) string {
		return fmt.Sprintf("%d\t%s", r.Revision, r.Time.UTC().Format(time.RFC3339))
	})
}

func policyHistoryGet(k *call) error {
	name, err := policyArg(k.c, 0)
	if err != nil {
		return err
	}
	s := k.c.Args().Get(1)
	rev, err := strconv.ParseInt(s, 10, 64)
	if err != nil || rev < 1 {
		return usageErrorf("revision %q must be a positive whole number", s)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	p, err := k.api.PolicyRevision(ctx, name, rev)
	if err != nil {
		return k.fail(err, fmt.Sprintf("policy %s revision %d not found", name, rev))
	}
	return k.printJSON(p)
}
