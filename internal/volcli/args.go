package volcli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
)

// reorderArgs lets flags follow the arguments of a command, as in
// "volcli volume create p/n --opt size=10MB": urfave/cli v2 parses with Go's
// flag package, which stops at the first argument (v2.27.7 leaves
// "--opt size=10MB" in Args; only v3's own parser takes flags anywhere, and
// moving to v3 changes every command's signature). The flags of the final command are moved before its
// arguments, and global flags given after the command (volcli volume
// list-all --json) are moved before it. A "--" ends flag handling; anything
// unrecognized is left for the parser to report.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var global, path, flags, pos []string
	i := 1
	for i < len(args) && isFlag(args[i]) {
		f, ok := takeFlag(app.Flags, args, i)
		if !ok {
			return args
		}
		global = append(global, f...)
		i += len(f)
	}
	cmds := app.Commands
	var leaf *cli.Command
	for i < len(args) {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		path = append(path, args[i])
		i++
		leaf = c
		if len(c.Subcommands) == 0 {
			break
		}
		cmds = c.Subcommands
	}
	if leaf == nil || len(leaf.Subcommands) > 0 {
		return args
	}
	dashes := false
	for i < len(args) {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
			dashes = true
			continue
		case !isFlag(a):
			pos = append(pos, a)
			i++
			continue
		}
		// A flag missing its value ends the line, so that the parser
		// reports it rather than taking the next argument as the value.
		if f, ok := takeFlag(leaf.Flags, args, i); ok {
			flags = append(flags, f...)
			i += len(f)
			if missingValue(leaf.Flags, args, i) {
				return concat(args[:1], global, path, flags)
			}
		} else if f, ok := takeFlag(app.Flags, args, i); ok {
			global = append(global, f...)
			i += len(f)
			if missingValue(app.Flags, args, i) {
				return concat(args[:1], global)
			}
		} else {
			flags = append(flags, a)
			i++
		}
	}
	if dashes {
		flags = append(flags, "--")
	}
	return concat(args[:1], global, path, flags, pos)
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// missingValue reports whether the flag just taken, ending at args[i-1], is
// a value flag given last without its value.
func missingValue(flags []cli.Flag, args []string, i int) bool {
	if i != len(args) {
		return false
	}
	last := args[i-1]
	if !isFlag(last) || strings.Contains(last, "=") {
		return false
	}
	name := strings.TrimLeft(last, "-")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' && a != "--" }

// takeFlag reports whether args[i] is one of flags and returns it with its
// value, if separate ("--opt k=v" is two elements), under the flag's first
// name: urfave/cli refuses a slice flag given as both "--opt" and "-o".
func takeFlag(flags []cli.Flag, args []string, i int) ([]string, bool) {
	name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		canon := "--" + f.Names()[0]
		if hasValue {
			return []string{canon + "=" + value}, true
		}
		if _, isBool := f.(*cli.BoolFlag); isBool || i+1 >= len(args) {
			return []string{canon}, true
		}
		return []string{canon, args[i+1]}, true
	}
	return nil, false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// wantArgs checks the number of positional arguments.
func wantArgs(c *cli.Context, n int) error {
	if got := c.Args().Len(); got != n {
		return usageErrorf("usage: %s %s (%s)", c.Command.HelpName, c.Command.ArgsUsage, argCount(n, got))
	}
	return nil
}

func argCount(want, got int) string {
	plural := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return strconv.Itoa(n) + " arguments"
	}
	return fmt.Sprintf("want %s, got %d", plural(want), got)
}

// policyArg validates the policy name at position i.
func policyArg(c *cli.Context, i int) (string, error) {
	name := c.Args().Get(i)
	if err := config.ValidateName("policy", name); err != nil {
		return "", invalid(err)
	}
	return name, nil
}

// refArg parses and validates the POLICY/NAME at position i.
func refArg(c *cli.Context, i int) (config.VolumeRef, error) {
	ref, err := config.ParseVolumeRef(c.Args().Get(i))
	if err != nil {
		return config.VolumeRef{}, invalid(err)
	}
	return ref, nil
}

// invalid turns a local validation error into a usage error, without the
// sentinel's text.
func invalid(err error) error {
	return &exitError{code: ExitUsage, msg: cleanMessage(err)}
}

// fileFlag returns the --file flag of the upload commands (a new one for
// each command: urfave/cli keeps state in flags).
func fileFlag() cli.Flag {
	return &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the JSON document from `FILE` instead of stdin"}
}

// readDoc returns the JSON document of an upload: --file, or all of stdin.
// Surrounding whitespace is dropped; an empty document is a usage error.
func (e *env) readDoc(c *cli.Context) ([]byte, error) {
	var (
		data []byte
		err  error
		from = "stdin"
	)
	if f := c.String("file"); f != "" {
		from = f
		if data, err = os.ReadFile(f); err != nil {
			return nil, usageErrorf("read --file: %v", err)
		}
	} else {
		if f, ok := e.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return nil, usageErrorf("no JSON on stdin (use --file or pipe a document)")
			}
		}
		if e.stdin != nil {
			if data, err = io.ReadAll(e.stdin); err != nil {
				return nil, &exitError{code: ExitError, msg: fmt.Sprintf("read stdin: %v", err)}
			}
		}
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		if from == "stdin" {
			return nil, usageErrorf("no JSON on stdin (use --file or pipe a document)")
		}
		return nil, usageErrorf("%s is empty: no JSON document", from)
	}
	return data, nil
}
