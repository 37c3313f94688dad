package clidoc

import (
	"io"

	"github.com/volplugin/volplugin/internal/volcli"
)

// VolcliCommand is the command that regenerates docs/volcli.md, run from the
// repository's root.
const VolcliCommand = "go run ./internal/clidoc/cmd/volcli-doc -o docs/volcli.md"

// Volcli writes the volcli command reference (docs/volcli.md).
func Volcli(w io.Writer) error {
	return Markdown(w, volcli.App(nil, io.Discard, io.Discard), VolcliCommand)
}
