// Command volcli-doc writes the volcli command reference in Markdown,
// generated from volcli's command definitions:
//
//	go run ./internal/clidoc/cmd/volcli-doc -o docs/volcli.md
//
// Without -o it writes to stdout.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/volplugin/volplugin/internal/clidoc"
)

func main() {
	out := flag.String("o", "", "write to `FILE` (replaced whole, only on success) instead of stdout")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: volcli-doc [-o FILE]")
		os.Exit(2)
	}
	var buf bytes.Buffer
	if err := clidoc.Volcli(&buf); err != nil {
		fmt.Fprintln(os.Stderr, "volcli-doc:", err)
		os.Exit(1)
	}
	if err := write(*out, buf.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, "volcli-doc:", err)
		os.Exit(1)
	}
}

// write puts data in path through a temporary file and a rename, so a
// failure never leaves a truncated reference behind; "" is stdout.
func write(path string, data []byte) error {
	if path == "" {
		_, err := os.Stdout.Write(data)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".volcli-doc-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
