package volcli

import (
	"context"
	"embed"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// Shell completion works the urfave/cli v2 way: the script runs the words
// typed so far with completionFlag appended, and volcli prints the
// candidates, one a line, instead of running the command. urfave/cli
// completes commands and flags; the functions below add the names that
// volmaster knows.

// completionFlag is urfave/cli's hidden flag asking for completions.
const completionFlag = "--generate-bash-completion"

// completeTimeout bounds the volmaster call behind one completion: a shell
// must not hang on <TAB> when volmaster is slow or down.
const completeTimeout = 2 * time.Second

// The completion scripts (one source for `volcli completion` and `make
// install`).
//
//go:embed completion/volcli.bash completion/_volcli
var completionScripts embed.FS

var completionFiles = map[string]string{"bash": "completion/volcli.bash", "zsh": "completion/_volcli"}

func completionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "The script completes commands, flags, and the names of policies, volumes, snapshots, trash " +
			"entries and tokens, which it asks volmaster for (at most 2 seconds per <TAB>, silently nothing if " +
			"volmaster does not answer; --volmaster and the other global flags typed on the line are used). make install " +
			"installs both scripts (bash: /usr/share/bash-completion/completions/volcli, zsh: " +
			"/usr/share/zsh/vendor-completions/_volcli). To try one in the current shell: source <(volcli completion " +
			"bash), or in zsh after compinit: source <(volcli completion zsh).",
		BashComplete: e.complete(argShell),
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1); err != nil {
				return err
			}
			shell := c.Args().First()
			file, ok := completionFiles[shell]
			if !ok {
				return usageErrorf("no completion for shell %q: want bash or zsh", shell)
			}
			b, err := completionScripts.ReadFile(file)
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			if _, err := c.App.Writer.Write(b); err != nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("write output: %v", err)}
			}
			return nil
		},
	}
}

// argKind is what a command's positional argument names.
type argKind int

const (
	argNone      argKind = iota
	argPolicy            // a policy name
	argVolume            // POLICY/NAME of a volume
	argSnapshot          // a snapshot of the volume given as the first argument
	argTrash             // POLICY/NAME of a trash entry
	argTrashID           // the ID of a trash entry of the first argument
	argTrashList         // a policy or the POLICY/NAME of a trash entry
	argToken             // a token ID
	argNewVolume         // POLICY/NAME of a new volume: the policy is completed
	argShell             // a shell completionCommand has a script for
)

// complete returns the completion function of a command whose positional
// arguments are kinds, in order.
func (e *env) complete(kinds ...argKind) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if e.completingFlag() {
			cli.DefaultCompleteWithFlags(c.Command)(c)
			return
		}
		n := c.Args().Len()
		if n >= len(kinds) {
			return
		}
		for _, s := range e.candidates(c, kinds[n]) {
			fmt.Fprintln(e.stdout, s)
		}
	}
}

// completingFlag reports whether the word being completed is a flag: the
// script then passes it just before completionFlag.
func (e *env) completingFlag() bool {
	n := len(e.args)
	return n >= 2 && e.args[n-1] == completionFlag && strings.HasPrefix(e.args[n-2], "-")
}

// candidates asks volmaster for the names of kind; on any error there are
// none (a completion never prints an error).
func (e *env) candidates(c *cli.Context, kind argKind) []string {
	if kind == argShell {
		return slices.Sorted(maps.Keys(completionFiles))
	}
	k, err := e.connect(c, client.WithRetries(0, 0))
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	switch kind {
	case argPolicy:
		names, _ := k.api.Policies(ctx)
		return names
	case argNewVolume:
		names, _ := k.api.Policies(ctx)
		return strs(names, func(n string) string { return n + "/" })
	case argVolume:
		refs, _ := k.api.Volumes(ctx, "")
		return strs(refs, config.VolumeRef.String)
	case argSnapshot:
		ref, err := config.ParseVolumeRef(c.Args().First())
		if err != nil {
			return nil
		}
		snaps, _ := k.api.Snapshots(ctx, ref)
		return strs(snaps, func(s config.Snapshot) string { return s.Name })
	case argTrash, argTrashList, argTrashID:
		var ref config.VolumeRef
		if kind == argTrashID {
			if ref, err = config.ParseVolumeRef(c.Args().First()); err != nil {
				return nil
			}
		}
		entries, _ := k.api.Trash(ctx, ref)
		if kind == argTrashID {
			return strs(entries, func(e config.TrashEntry) string { return e.ID })
		}
		out := strs(entries, func(e config.TrashEntry) string { return e.Ref().String() })
		if kind == argTrashList {
			for _, r := range entries {
				out = append(out, r.Volume.Policy)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	case argToken:
		ts, _ := k.api.Tokens(ctx)
		return strs(ts, func(t config.Token) string { return t.ID })
	}
	return nil
}

func strs[T any](items []T, f func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = f(it)
	}
	return out
}

// completionArgs prepares a completion request for the parser: the flag is
// set aside while flags are moved before the arguments (reorderArgs), then
// put back last, where urfave/cli looks for it. ok is false after "--",
// where urfave/cli would run the command with the flag as an argument:
// such a request gets no answer at all.
func completionArgs(app *cli.App, args []string) (out []string, ok bool) {
	rest := args[:len(args)-1]
	if slices.Contains(rest, "--") {
		return nil, false
	}
	return append(reorderArgs(app, rest), completionFlag), true
}
