// Package volcli is the command-line front end of the volmaster API: policies,
// volumes, snapshots, runtime options, the global configuration and mount
// locks. Every
// call goes through internal/client; volcli never talks to volplugin's etcd
// (migrate from-contiv reads the original volplugin's, over its v2 API).
package volcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/bearer"
	"github.com/volplugin/volplugin/internal/client"
)

// Exit codes of volcli, as documented in its help.
const (
	ExitOK       = 0 // success
	ExitError    = 1 // any other failure, e.g. volmaster unreachable
	ExitUsage    = 2 // bad usage or invalid input
	ExitNotFound = 3 // the policy, volume, snapshot, revision or lock does not exist
	ExitConflict = 4 // already exists, locked, mounted or busy
)

const exitCodesHelp = `EXIT CODES:
   0  success
   1  error (volmaster unreachable, timeout, internal error, a failed
      snapshot --exec or --after command)
   2  usage error or invalid input (arguments, names, sizes, options, JSON)
   3  not found (policy, volume, snapshot, revision or mount lock)
   4  conflict (already exists, in use, locked or busy)
`

const outputHelp = `OUTPUT:
   The list commands (policy list, volume list, volume list-all, volume
   snapshot list, use list, supervisor status, token list) print an aligned
   table with a header when stdout is a terminal, and tab-separated lines,
   one per item, when it is not (a pipe, a file: what scripts read). Their
   -o table, -o wide (more columns) and -o plain (the lines) choose either
   way; -q prints only the names, --json prints JSON. volume resize, volume
   snapshot take and copy, and volume reclaim show a progress line on stderr
   while they wait, only when stderr is a terminal.

CHECKS AND COMPLETION:
   volcli doctor checks volmaster, etcd, the clock and the volsupervisors;
   volcli doctor --host also checks this machine as a volplugin host.
   volcli completion bash|zsh prints the shell completion script (make
   install installs both).
`

// Global flag names.
const (
	flagVolmaster = "volmaster"
	flagJSON      = "json"
	flagTimeout   = "timeout"
)

// DefaultTimeout bounds every volmaster call unless --timeout says otherwise.
const DefaultTimeout = 2 * time.Minute

// App builds the volcli application. It never calls os.Exit; use Run for the
// exit code.
func App(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return newApp(&env{stdin: stdin, stdout: stdout, stderr: stderr})
}

func newApp(e *env) *cli.App {
	app := &cli.App{
		Name:        "volcli",
		Usage:       "manage volplugin policies, volumes, snapshots and mount locks through volmaster",
		UsageText:   "volcli [global options] command [command options] [arguments...]",
		HideVersion: true,
		// --opt values are never split on commas.
		DisableSliceFlagSeparator: true,
		HideHelpCommand:           true,
		EnableBashCompletion:      true,
		Reader:                    e.stdin,
		Writer:                    e.stdout,
		ErrWriter:                 e.stderr,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: flagVolmaster, Usage: "volmaster API `URL`; several (repeated or comma-separated) volmasters of one cluster are tried in turn", EnvVars: []string{"VOLMASTER"}, Value: cli.NewStringSlice(client.DefaultURL)},
			&cli.BoolFlag{Name: flagJSON, Usage: "print machine-readable JSON (lists as JSON arrays)"},
			&cli.StringFlag{Name: "token", Usage: "bearer `TOKEN` (ID.SECRET) for a volmaster run with --auth; on the command line every local user can read it (ps): prefer VOLMASTER_TOKEN or --token-file", EnvVars: []string{"VOLMASTER_TOKEN"}},
			&cli.StringFlag{Name: "token-file", Usage: "read the bearer token from `FILE` (its first line)", EnvVars: []string{"VOLMASTER_TOKEN_FILE"}},
			&cli.StringFlag{Name: "tls-ca", Usage: "verify volmaster's TLS certificate with this CA `FILE` (https:// URLs)", EnvVars: []string{"VOLMASTER_TLS_CA"}},
			&cli.StringFlag{Name: "tls-cert", Usage: "client certificate `FILE` for mutual TLS", EnvVars: []string{"VOLMASTER_TLS_CERT"}},
			&cli.StringFlag{Name: "tls-key", Usage: "the client certificate's key `FILE`", EnvVars: []string{"VOLMASTER_TLS_KEY"}},
			&cli.DurationFlag{Name: flagTimeout, Usage: "bound every volmaster call, and each snapshot --exec or --after command, by this `DURATION`", Value: DefaultTimeout},
		},
		Commands: []*cli.Command{
			policyCommand(e),
			volumeCommand(e),
			globalCommand(e),
			useCommand(e),
			supervisorCommand(e),
			infoCommand(e),
			tokenCommand(e),
			auditCommand(e),
			doctorCommand(e),
			completionCommand(e),
			migrateCommand(e),
		},
		Action:                groupAction,
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n" + outputHelp,
		// Errors are printed and turned into exit codes by Run.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
	}
	walk(app.Commands, func(c *cli.Command) {
		c.HideHelpCommand = true
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = groupAction
		}
	})
	return app
}

// Run runs volcli with args (args[0] is the program name) and returns the exit
// code; errors are printed on stderr as one "volcli: ..." line.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(&env{stdin: stdin, stdout: stdout, stderr: stderr, args: args})
	if len(args) > 1 && args[len(args)-1] == completionFlag {
		// A completion prints candidates or nothing, never an error.
		if args, ok := completionArgs(app, args); ok {
			_ = app.Run(args)
		}
		return ExitOK
	}
	err := app.Run(reorderArgs(app, args))
	if err == nil {
		return ExitOK
	}
	code, msg := describe(err)
	fmt.Fprintf(stderr, "volcli: %s\n", msg)
	return code
}

func walk(cmds []*cli.Command, f func(*cli.Command)) {
	for _, c := range cmds {
		f(c)
		walk(c.Subcommands, f)
	}
}

// exitError is an error with its exit code, as returned by every action.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageErrorf("%v (see '%s --help')", err, helpName(c))
}

func helpName(c *cli.Context) string {
	if c.Command != nil && c.Command.HelpName != "" {
		return c.Command.HelpName
	}
	return c.App.Name
}

// groupAction runs for the app or a command group when no subcommand
// matched: help without arguments, a usage error for an unknown command.
func groupAction(c *cli.Context) error {
	if c.Args().Present() {
		return usageErrorf("unknown command %q for '%s' (see '%s --help')", c.Args().First(), helpName(c), helpName(c))
	}
	if c.Command == nil || c.Command.Name == "" {
		return cli.ShowAppHelp(c)
	}
	return cli.ShowSubcommandHelp(c)
}

// describe returns the exit code and the one-line message for err.
func describe(err error) (int, string) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.msg
	}
	// Anything else comes from urfave/cli itself: a flag or command it could
	// not parse (help for an unknown topic, say).
	return ExitUsage, strings.TrimSpace(err.Error())
}

// exitCode maps an API error to an exit code by its config sentinel.
func exitCode(err error) int {
	switch {
	case errors.Is(err, config.ErrInvalid):
		return ExitUsage
	case errors.Is(err, config.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, config.ErrExists), errors.Is(err, config.ErrInUse):
		return ExitConflict
	default:
		return ExitError
	}
}

// env is what every action needs: the I/O streams and, from the global
// flags, a client, a timeout and the output mode. stderr carries only the
// output of the commands volcli runs (snapshot take --exec and --after) and
// progress lines on a terminal; Run prints errors itself.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// args is the command line Run was given (completion looks at it).
	args []string
}

// call is one action's connection to volmaster.
type call struct {
	*env
	c       *cli.Context
	api     *client.Client
	url     string
	json    bool
	timeout time.Duration
}

// connect reads the global flags and returns a client for the action; opts
// come after those the flags make.
func (e *env) connect(c *cli.Context, extra ...client.Option) (*call, error) {
	timeout := c.Duration(flagTimeout)
	if timeout <= 0 {
		return nil, usageErrorf("--timeout %s must be positive", timeout)
	}
	url := strings.Join(c.StringSlice(flagVolmaster), ",")
	var opts []client.Option
	if ca, cert, key := c.String("tls-ca"), c.String("tls-cert"), c.String("tls-key"); ca != "" || cert != "" || key != "" {
		cfg, err := client.TLSConfig(ca, cert, key)
		if err != nil {
			return nil, &exitError{code: exitCode(err), msg: err.Error()}
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	tok, err := token(c, e.stderr)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	api, err := client.New(url, append(opts, extra...)...)
	if err != nil {
		return nil, &exitError{code: exitCode(err), msg: err.Error()}
	}
	return &call{env: e, c: c, api: api, url: url, json: c.Bool(flagJSON), timeout: timeout}, nil
}

// ctx returns the context of one volmaster call.
func (k *call) ctx() (context.Context, context.CancelFunc) {
	parent := k.c.Context
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, k.timeout)
}

// fail turns an API error into a one-line message and exit code. notFound,
// if not empty, is the message for a missing object ("volume p/n not found");
// otherwise the server's message is cleaned up.
func (k *call) fail(err error, notFound string) error {
	if err == nil {
		return nil
	}
	var ae *client.Error
	isAPI := errors.As(err, &ae)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &exitError{code: ExitError, msg: fmt.Sprintf("volmaster at %s did not answer within %s", k.url, k.timeout)}
	case errors.Is(err, context.Canceled):
		return &exitError{code: ExitError, msg: "interrupted"}
	case !isAPI && errors.Is(err, config.ErrUnavailable):
		return &exitError{code: ExitError, msg: fmt.Sprintf("cannot reach volmaster at %s: %s", k.url, unreachableCause(err))}
	case errors.Is(err, config.ErrNotFound) && notFound != "":
		return &exitError{code: ExitNotFound, msg: notFound}
	}
	return &exitError{code: exitCode(err), msg: cleanMessage(err)}
}

// cleanMessage drops the trailing sentinel text that the server's wrapping
// leaves ("volume p/n: already exists" stays readable, "...: invalid input"
// loses its tail).
func cleanMessage(err error) string {
	msg := strings.TrimSpace(err.Error())
	for _, s := range []struct {
		err  error
		keep bool // keep the words, without the colon
	}{
		{config.ErrNotFound, true}, {config.ErrExists, true},
		{config.ErrInvalid, false}, {config.ErrBusy, false}, {config.ErrProtected, false}, {config.ErrInUse, false}, {config.ErrUnavailable, false},
	} {
		if !errors.Is(err, s.err) {
			continue
		}
		if m, ok := strings.CutSuffix(msg, ": "+s.err.Error()); ok && m != "" {
			if s.keep {
				m += " " + s.err.Error()
			}
			msg = m
		}
		break
	}
	return msg
}

// unreachableCause shortens a connection failure to its last, human part
// ("connection refused", "no such host").
func unreachableCause(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+config.ErrUnavailable.Error())
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// action wraps a command body: it checks the argument count and connects
// before calling fn.
func (e *env) action(nargs int, fn func(k *call) error) cli.ActionFunc {
	return e.actionArgs(nargs, nargs, fn)
}

// actionArgs is action for a command taking min to max arguments.
func (e *env) actionArgs(min, max int, fn func(k *call) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if n := c.Args().Len(); n < min || n > max {
			return wantArgs(c, max)
		}
		k, err := e.connect(c)
		if err != nil {
			return err
		}
		return fn(k)
	}
}

// token is the bearer token from --token, VOLMASTER_TOKEN or --token-file.
// A --token typed on the command line is visible to every local user in the
// process list, so it is used with a warning.
func token(c *cli.Context, stderr io.Writer) (string, error) {
	tok, file := c.String("token"), c.String("token-file")
	if tok != "" && file != "" {
		return "", usageErrorf("--token and --token-file are both set: give one")
	}
	if file != "" {
		tok, err := bearer.FromFile(file)
		if err != nil {
			return "", &exitError{code: ExitUsage, msg: err.Error()}
		}
		return tok, nil
	}
	if tok != "" && os.Getenv("VOLMASTER_TOKEN") != tok {
		fmt.Fprintln(stderr, "volcli: warning: --token on the command line is readable by every local user (ps); use VOLMASTER_TOKEN or --token-file")
	}
	return tok, nil
}
