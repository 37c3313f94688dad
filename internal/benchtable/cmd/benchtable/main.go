// Command benchtable runs the benchmarks `make bench` names and prints one
// table of their figures (internal/benchtable). -short runs each once at a
// small size, as `make test` does so that the command cannot rot.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"golang.org/x/perf/benchfmt"

	"github.com/volplugin/volplugin/internal/benchtable"
)

func main() {
	short := flag.Bool("short", false, "run each benchmark briefly at a small size (CI)")
	tags := flag.String("tags", "pacific", "build tags for go test")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound each go test run")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchtable takes no arguments, got %q\n", flag.Args())
		os.Exit(2)
	}
	results := map[string]*benchfmt.Result{}
	failed := 0
	for _, g := range benchtable.Groups {
		if *short && g.FullOnly {
			continue
		}
		var out bytes.Buffer
		bt := g.BenchTime
		args := []string{"test", "-tags", *tags, "-run", "^$", "-bench", g.Bench, "-count", "1"}
		if *short {
			bt = g.ShortTime
			args = append(args, "-short")
		}
		args = append(args, "-benchtime", bt, "-timeout", timeout.String(), g.Pkg)
		fmt.Fprintf(os.Stderr, "benchtable: go %v\n", args)
		ctx, cancel := context.WithTimeout(context.Background(), *timeout+time.Minute)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), g.Env...)
		// Progress and failures go to stderr as they come; the table is
		// built from what go test printed.
		cmd.Stdout = io.MultiWriter(&out, os.Stderr)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s %s: %v\n", g.Pkg, g.Bench, err)
			failed++
		}
		cancel()
		if err := benchtable.Results(results, out.Bytes(), g.Label); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: reading the results: %v\n", err)
			failed++
		}
	}
	size := "10,000 volumes"
	if *short {
		size = "500 volumes (-short)"
	}
	fmt.Println()
	if err := benchtable.Print(os.Stdout, benchtable.Rows, results, size); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "benchtable: %d benchmark runs failed\n", failed)
		os.Exit(1)
	}
}
