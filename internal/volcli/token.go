package volcli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

func tokenCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "manage API tokens (admin only; volmaster --auth)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "create a token and print its secret (shown only this once)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "role", Usage: "`ROLE`: admin, tenant, host or read-only", Required: true},
					&cli.StringSliceFlag{Name: "policy", Usage: "`POLICY` whose volumes a tenant token may use, or a host token may change like a tenant (docker volume create/rm, snapshots, runtime) (repeatable; required for tenant tokens)"},
					&cli.StringFlag{Name: "host", Usage: "host label (`NAME`, the volplugin's --host-label) a host token acts for (host tokens only, required for them)"},
					&cli.StringFlag{Name: "description", Usage: "free `TEXT` to tell tokens apart"},
					&cli.StringFlag{Name: "ttl", Usage: "the token stops working this `DURATION` after now (like 12h or 720h; 1m to 10 years); default: until revoked"},
				},
				Action: e.action(0, tokenCreate),
			},
			{
				Name:   "list",
				Usage:  "list tokens: ID, role, scope (a tenant's policies, a host token's host), expiry, description (never secrets)",
				Flags:  listFlags(),
				Action: e.action(0, tokenList),
			},
			{
				Name:         "revoke",
				Usage:        "delete a token",
				ArgsUsage:    "ID",
				BashComplete: e.complete(argToken),
				Action:       e.action(1, tokenRevoke),
			},
		},
	}
}

func tokenCreate(k *call) error {
	req := config.TokenRequest{Role: k.c.String("role"), Policies: k.c.StringSlice("policy"), Host: k.c.String("host"),
		Description: k.c.String("description")}
	if ttl := k.c.String("ttl"); ttl != "" {
		d, err := config.ParseDuration(ttl)
		if err != nil {
			return invalid(fmt.Errorf("--ttl: %w", err))
		}
		req.TTL = d
		if req.TTL == 0 {
			return invalid(fmt.Errorf("--ttl %s: a token that expires at once is of no use: %w", ttl, config.ErrInvalid))
		}
	}
	if err := req.Validate(); err != nil {
		return invalid(err)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	t, err := k.api.CreateToken(ctx, req)
	if err != nil {
		return k.fail(err, "")
	}
	return k.done(t, "%s", t.Secret)
}

func tokenList(k *call) error {
	mode, err := k.outputMode()
	if err != nil {
		return err
	}
	ctx, cancel := k.ctx()
	defer cancel()
	ts, err := k.api.Tokens(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	return tokenListing(ts, time.Now()).show(k, mode)
}

func tokenListing(ts []config.Token, now time.Time) listing[config.Token] {
	expires := func(t config.Token) string {
		switch {
		case t.Expired(now):
			return "expired " + t.Expires.UTC().Format(time.RFC3339)
		case !t.Expires.IsZero():
			return t.Expires.UTC().Format(time.RFC3339)
		}
		return ""
	}
	return listing[config.Token]{
		items: ts,
		name:  func(t config.Token) string { return t.ID },
		line: func(t config.Token) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", t.ID, t.Role, tokenScope(t), cell(expires(t)), t.Description)
		},
		cols: []column[config.Token]{
			{name: "ID", val: func(t config.Token) string { return t.ID }},
			{name: "ROLE", val: func(t config.Token) string { return t.Role }},
			{name: "SCOPE", val: tokenScope},
			{name: "EXPIRES", val: expires},
			{name: "CREATED", wide: true, val: func(t config.Token) string { return stamp(t.Created) }},
			{name: "DESCRIPTION", val: func(t config.Token) string { return t.Description }},
		},
	}
}

// tokenScope is what a token is limited to: a tenant's policies, a host
// token's host and policies ("host=NAME P1,P2"; "host=* (unscoped:
// re-issue)" for one made before host tokens named their host), or "-".
func tokenScope(t config.Token) string {
	switch {
	case t.Role == config.RoleTenant:
		return strings.Join(t.Policies, ",")
	case t.Role == config.RoleHost && t.Host == "":
		return "host=* (unscoped: re-issue)"
	case t.Role == config.RoleHost && len(t.Policies) > 0:
		return "host=" + t.Host + " " + strings.Join(t.Policies, ",")
	case t.Role == config.RoleHost:
		return "host=" + t.Host
	default:
		return "-"
	}
}

func tokenRevoke(k *call) error {
	id := k.c.Args().First()
	if err := config.ValidateName("token", id); err != nil {
		return invalid(err)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.api.RevokeToken(ctx, id); err != nil {
		return k.fail(err, "token "+id+" not found")
	}
	return k.done(map[string]string{"revoked": id}, "token %s revoked", id)
}
