//go:build faults

package faultpoint

import (
	"context"
	"fmt"
	"os"
)

// Enabled says whether this binary was built with the fault injector.
const Enabled = true

// Hit blocks forever when VOLPLUGIN_FAULTPOINT is name (a fault injector,
// built only with the "faults" tag), after printing that it was reached to
// stderr; the test then kills the process.
func Hit(_ context.Context, name string) {
	if os.Getenv(Env) != name {
		return
	}
	fmt.Fprintln(os.Stderr, Reached(name))
	select {}
}
