// Package cmdutil holds what the daemon mains share: the action wrapper
// (no arguments, logging, signals, goroutine dumps) and the exit on error.
// Flags stay spelled out in each main, where docs/docs_test.go reads them.
package cmdutil

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/internal/diag"
)

// Action wraps a daemon's work: it refuses arguments, sets up a logger
// (--debug), a context that ends on SIGINT or SIGTERM, and goroutine dumps
// on SIGUSR1, then calls serve.
func Action(name string, serve func(ctx context.Context, c *cli.Context, log *logrus.Logger) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return cli.Exit(fmt.Sprintf("%s takes no arguments, got %q", name, c.Args().Slice()), 2)
		}
		log := logrus.New()
		if c.Bool("debug") {
			log.SetLevel(logrus.DebugLevel)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		diag.DumpOnSIGUSR1(ctx, log)
		return serve(ctx, c, log)
	}
}

// Main runs app with the version set and exits 1 with "name: error" when
// it fails.
func Main(app *cli.App) {
	app.Version = diag.Version + " (" + diag.Commit + ")"
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, app.Name+":", err)
		os.Exit(1)
	}
}
