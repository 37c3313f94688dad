// Command volcli manages volplugin policies, volumes and mount locks through
// the volmaster API. Run "volcli --help" for commands and exit codes.
package main

import (
	"os"

	"github.com/volplugin/volplugin/internal/volcli"
)

func main() {
	os.Exit(volcli.Run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
