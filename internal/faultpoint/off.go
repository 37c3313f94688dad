//go:build !faults

package faultpoint

import "context"

// Enabled says whether this binary was built with the fault injector.
const Enabled = false

// Hit does nothing: this binary was built without the "faults" tag.
func Hit(context.Context, string, string) {}
