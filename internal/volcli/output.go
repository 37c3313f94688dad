package volcli

import (
	"encoding/json"
	"fmt"
	"strings"
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
	var b strings.Builder
	for _, it := range items {
		b.WriteString(line(it))
		b.WriteByte('\n')
	}
	if _, err := fmt.Fprint(k.stdout, b.String()); err != nil {
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
	if _, err := fmt.Fprintf(k.stdout, format+"\n", args...); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("write output: %v", err)}
	}
	return nil
}
