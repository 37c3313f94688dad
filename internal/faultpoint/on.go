//go:build faults

package faultpoint

import (
	"context"
	"fmt"
	"os"
)

// Enabled says whether this binary was built with the fault injector.
const Enabled = true

// Hit blocks until ctx ends when VOLPLUGIN_FAULTPOINT names step name on
// subject (a fault
// injector, built only with the "faults" tag), after printing that it was
// reached to stderr; the test then kills the process.
func Hit(ctx context.Context, name, subject string) {
	e := match(os.Getenv(Env), name, subject)
	if e == "" {
		return
	}
	fmt.Fprintln(os.Stderr, Reached(e))
	<-ctx.Done()
}
