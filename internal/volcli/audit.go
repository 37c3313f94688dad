package volcli

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func auditCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "list volmaster's last audit entries, oldest first: time, who, role, client, method, path, status (admin only)",
		Description: "volmaster keeps the last 1000 mutating requests, and apart from them the last 1000 requests it refused " +
			"(401, 403: --refused). The filters select among those; volmaster --audit-log keeps them all in a file. " +
			"Each volmaster keeps its own (in memory: a restart empties it); --all-volmasters merges those of every --volmaster URL.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "refused", Usage: "list the refused requests instead"},
			&cli.StringFlag{Name: "who", Usage: "only entries of this token `ID` (or anonymous, unauthenticated)"},
			&cli.StringFlag{Name: "route", Usage: "only entries whose route or path contains `TEXT` (like /v1/volumes)"},
			&cli.StringFlag{Name: "since", Usage: "only entries of the last `DURATION` (like 1h)"},
			&cli.BoolFlag{Name: "all-volmasters", Usage: "ask every --volmaster URL, not only the first that answers, and merge their entries by time " +
				"(each line then ends with the volmaster's ID); one that does not answer is named on stderr and the exit code is 1"},
		},
		Action: e.action(0, auditList),
	}
}

func auditList(k *call) error {
	var since time.Time
	if s := k.c.String("since"); s != "" {
		d, err := config.ParseDuration(s)
		if err != nil {
			return invalid(fmt.Errorf("--since: %w", err))
		}
		since = time.Now().Add(-d.D())
	}
	who, route := k.c.String("who"), k.c.String("route")
	merged := k.c.Bool("all-volmasters")
	all, missing, err := auditEntries(k, merged)
	if err != nil {
		return err
	}
	var out []config.AuditEntry
	for _, e := range all {
		switch {
		case who != "" && e.Who != who:
		case route != "" && !strings.Contains(e.Route, route) && !strings.Contains(e.Path, route):
		case !since.IsZero() && e.Time.Before(since):
		default:
			out = append(out, e)
		}
	}
	err = printList(k, out, func(e config.AuditEntry) string {
		role := e.Role
		if role == "" {
			role = "-"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d", e.Time.UTC().Format(time.RFC3339), e.Who, role, e.Client, e.Method, e.Path, e.Status)
		if merged {
			line += "\t" + e.Volmaster
		}
		return line
	})
	if err == nil && missing > 0 {
		err = &exitError{code: ExitError, msg: fmt.Sprintf("%d of %d volmasters did not answer: their entries are missing", missing, len(k.api.Each()))}
	}
	return err
}

// auditEntries returns the audit entries of the volmaster that answers, or
// with merged those of every volmaster URL, oldest first, and how many
// volmasters did not answer (each named on stderr). It fails only when none
// answered.
func auditEntries(k *call, merged bool) ([]config.AuditEntry, int, error) {
	refused := k.c.Bool("refused")
	if !merged {
		ctx, cancel := k.ctx()
		defer cancel()
		all, err := k.api.Audit(ctx, refused)
		return all, 0, k.fail(err, "")
	}
	var all []config.AuditEntry
	var lastErr error
	missing := 0
	for _, api := range k.api.Each() {
		ctx, cancel := k.ctx()
		es, err := api.Audit(ctx, refused)
		cancel()
		if err != nil {
			missing++
			lastErr = err
			fmt.Fprintf(k.stderr, "volcli: volmaster at %s: %s\n", api.Current(), cleanMessage(err))
			continue
		}
		all = append(all, es...)
	}
	if missing == len(k.api.Each()) {
		return nil, missing, k.fail(lastErr, "")
	}
	slices.SortStableFunc(all, func(a, b config.AuditEntry) int { return a.Time.Compare(b.Time) })
	return all, missing, nil
}
