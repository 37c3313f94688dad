package benchtable

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/perf/benchfmt"
)

// The table reads go test's output: a ratio against a reference measured in
// the same result, one against a target, sub-benchmark names, and a figure
// no benchmark produced.
func TestPrintFromBenchOutput(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkPluginCycle-2   	      11	         3.5 create-ms	        30.0 cycle-ms	        25.0 raw-ms
BenchmarkSnapshotFreeze/xfs-reflink-2         	       5	         2.000 frozen-ms/op
BenchmarkVolcliListAll-2   	      56	   4151428 ns/op
PASS
`)
	res := map[string]*benchfmt.Result{}
	if err := Results(res, out, ""); err != nil {
		t.Fatal(err)
	}
	if err := Results(res, []byte("BenchmarkVolcliListAll-2   	      10	   123000000 ns/op\n"+
		"BenchmarkVolmasterMemory-2   	      10	        23.40 ns/op	       681.3 heap-MB	      1056 rss-MB\n"), "@100k"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Print(&b, Rows, res, "10 volumes"); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"30.0 ms",
		"25.0 ms",
		"1.20×",
		"snapshot freeze, xfs data dir (reflink clone)",
		"0.04×",
		"volcli volume list-all @10 volumes",
		"4.15 ms",
		"REST GET one volume",
		"123 ms",
		"0.41×",
		"681 MiB", // benchfmt turns heap-MB into heap-B: the printed unit is read
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if line := lineOf(got, "plugin cycle"); !strings.Contains(line, "30.0 ms") || !strings.Contains(line, "1.20×") {
		t.Errorf("plugin cycle row: %q, want 30.0 ms against 25.0 ms, 1.20×", line)
	}
	if line := lineOf(got, "REST GET one volume"); !strings.Contains(line, "not measured") {
		t.Errorf("a figure without a result: %q, want not measured", line)
	}
}

func lineOf(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
