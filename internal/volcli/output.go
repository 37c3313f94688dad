package volcli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// printJSON prints v as JSON indented by two spaces.
func (k *call) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("encode output: %v", err)}
	}
	if _, err := k.stdout.Write(append(b, '\n')); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("write output: %v", err)}
	}
	return nil
}

// printList prints items as a JSON array with --json (never null), or lines
// (one per item) built by line.
func printList[T any](k *call, items []T, line func(T) string) error {
	if k.json {
		if items == nil {
			items = []T{}
		}
		return k.printJSON(items)
	}
	return k.write(joinLines(items, line))
}

func joinLines[T any](items []T, line func(T) string) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(line(it))
		b.WriteByte('\n')
	}
	return b.String()
}

func (k *call) write(s string) error {
	if _, err := io.WriteString(k.stdout, s); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("write output: %v", err)}
	}
	return nil
}

// done reports a successful change: the object as JSON with --json, else a
// short line.
func (k *call) done(v any, format string, args ...any) error {
	if k.json {
		return k.printJSON(v)
	}
	return k.write(fmt.Sprintf(format+"\n", args...))
}

// Output modes of the list commands.
const (
	outPlain = "plain" // one line per item, tab-separated: the format scripts read
	outTable = "table" // aligned columns with a header
	outWide  = "wide"  // table with more columns
	outQuiet = "quiet" // names only
	outJSON  = "json"
)

// Flags of the list commands.
const (
	flagOutput = "output"
	flagQuiet  = "quiet"
)

// listFlags returns the output flags of a list command (new ones for each
// command: urfave/cli keeps state in flags).
func listFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "`FORMAT`: table, wide (table with more columns) or plain " +
			"(tab-separated lines); default: table on a terminal, plain otherwise"},
		&cli.BoolFlag{Name: flagQuiet, Aliases: []string{"q"}, Usage: "print only the names, one a line"},
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// outputMode resolves --json, --quiet and --output: without any, a table on
// a terminal and plain lines otherwise, so that scripts keep reading what
// they always did.
func (k *call) outputMode() (string, error) {
	out, quiet := k.c.String(flagOutput), k.c.Bool(flagQuiet)
	given := 0
	for _, set := range []bool{k.json, quiet, out != ""} {
		if set {
			given++
		}
	}
	if given > 1 {
		return "", usageErrorf("--json, --quiet and --output exclude each other: give one")
	}
	switch {
	case k.json:
		return outJSON, nil
	case quiet:
		return outQuiet, nil
	case out == outPlain, out == outTable, out == outWide:
		return out, nil
	case out != "":
		return "", usageErrorf("--output %q: want table, wide or plain", out)
	case isTerminal(k.stdout):
		return outTable, nil
	default:
		return outPlain, nil
	}
}

// column is one column of a table; wide ones show with -o wide only.
type column[T any] struct {
	name string
	wide bool
	val  func(T) string
}

// listing is how a list command prints its items in every output mode.
type listing[T any] struct {
	items []T
	name  func(T) string // --quiet
	line  func(T) string // plain
	cols  []column[T]
	// json is what --json prints, if not items.
	json any
}

// show prints l in mode.
func (l listing[T]) show(k *call, mode string) error {
	if mode == outJSON {
		if l.json != nil {
			return k.printJSON(l.json)
		}
		if l.items == nil {
			l.items = []T{}
		}
		return k.printJSON(l.items)
	}
	var b strings.Builder
	l.render(&b, mode)
	return k.write(b.String())
}

// render writes l in mode (not JSON) to w.
func (l listing[T]) render(w io.Writer, mode string) {
	switch mode {
	case outQuiet:
		io.WriteString(w, joinLines(l.items, l.name))
		return
	case outPlain:
		io.WriteString(w, joinLines(l.items, l.line))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var cols []column[T]
	for _, c := range l.cols {
		if !c.wide || mode == outWide {
			cols = append(cols, c)
		}
	}
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.name
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
	for _, it := range l.items {
		for i, c := range cols {
			cells[i] = cell(c.val(it))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// cell makes a value safe for one table cell: "-" when empty, and no tab,
// newline or other control character (a description or an error text
// must neither break the columns nor drive the terminal).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// stamp is a time in a table: RFC 3339 in UTC, "" (shown "-") for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
