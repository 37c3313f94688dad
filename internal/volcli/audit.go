package volcli

import (
	"fmt"
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
			"(401, 403: --refused). The filters select among those; volmaster --audit-log keeps them all in a file.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "refused", Usage: "list the refused requests instead"},
			&cli.StringFlag{Name: "who", Usage: "only entries of this token `ID` (or anonymous, unauthenticated)"},
			&cli.StringFlag{Name: "route", Usage: "only entries whose route or path contains `TEXT` (like /v1/volumes)"},
			&cli.StringFlag{Name: "since", Usage: "only entries of the last `DURATION` (like 1h)"},
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
	ctx, cancel := k.ctx()
	defer cancel()
	all, err := k.api.Audit(ctx, k.c.Bool("refused"))
	if err != nil {
		return k.fail(err, "")
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
	return printList(k, out, func(e config.AuditEntry) string {
		role := e.Role
		if role == "" {
			role = "-"
		}
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d", e.Time.UTC().Format(time.RFC3339), e.Who, role, e.Client, e.Method, e.Path, e.Status)
	})
}
