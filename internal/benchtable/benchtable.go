// Package benchtable runs the project's benchmarks and prints their figures
// as one table: figure, measured, reference, ratio. A reference is either a
// figure measured in the same run (the raw steps the plugin automates) or a
// target the project set; never a number stored from an earlier run.
package benchtable

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"
)

// Group is one `go test -bench` invocation: benchmarks that share a
// process (the systemtests' populated volmaster) or a -benchtime.
type Group struct {
	Pkg, Bench string
	// BenchTime and ShortTime are -benchtime for the full and short runs.
	BenchTime, ShortTime string
	// Env is added to go test's environment; Label is appended to the
	// names of its results ("VolcliListAll@100k"), so that the same
	// benchmark run at two sizes makes two rows.
	Env   []string
	Label string
	// FullOnly groups are left out of the short run.
	FullOnly bool
}

// Groups are the benchmarks `make bench` runs, in order.
var Groups = []Group{
	{Pkg: "./volplugin/", Bench: "^BenchmarkPluginCycle$", BenchTime: "11x", ShortTime: "3x"},
	{Pkg: "./volplugin/", Bench: "^BenchmarkPluginCycleCeph$", BenchTime: "11x", ShortTime: "1x"},
	{Pkg: "./storage/backend/local/", Bench: "^BenchmarkSnapshotFreeze$", BenchTime: "5x", ShortTime: "1x"},
	{Pkg: "./storage/backend/ceph/", Bench: "^BenchmarkSnapshotFreezeCeph$", BenchTime: "5x", ShortTime: "1x"},
	{Pkg: "./volplugin/", Bench: "^Benchmark(LeaseCost1000Locks|RuntimeWatch1000Mounts)$", BenchTime: "1x", ShortTime: "1x"},
	{Pkg: "./volsupervisor/", Bench: "^BenchmarkSupervisor(10000Volumes|1000LocalVolumes)$", BenchTime: "1x", ShortTime: "1x"},
	{Pkg: "./systemtests/", Bench: "^Benchmark(VolcliListAll|RESTListAll|RESTGetVolume|VolmasterMemory|DockerRunWithVolume)$", BenchTime: "2s", ShortTime: "200ms"},
	{Pkg: "./systemtests/", Bench: "^BenchmarkFailoverAfterKill9$", BenchTime: "5x", ShortTime: "1x"},
	{Pkg: "./systemtests/", Bench: "^BenchmarkHAControlPlane$", BenchTime: "1x", ShortTime: "1x"},
	{Pkg: "./systemtests/", Bench: "^Benchmark(VolcliListAll|RESTListAll|VolmasterMemory)$", BenchTime: "10x",
		Env: []string{"VOLPLUGIN_BENCH_VOLUMES=100000"}, Label: "@100k", FullOnly: true},
}

// Row is one line of the table: Unit of benchmark Bench (its name without
// "Benchmark" and GOMAXPROCS), scaled by Scale, against a reference: RefUnit
// of the same result (measured in the same run), or Target.
type Row struct {
	Figure, Bench, Unit string
	Scale               float64
	Show                string // unit printed after the figure
	RefUnit             string
	Target              float64
	Note                string
	// Sized figures are named with the size of the run (10,000 volumes,
	// or 500 in the short run).
	Sized bool
}

// Rows are the figures of issue 14's table. A ratio above 1 for a latency
// is worse than the reference; Target rows name the project's goal.
var Rows = []Row{
	{Figure: "plugin cycle, local 64 MB ext4 (Create+Mount+Unmount+Remove)", Bench: "PluginCycle", Unit: "cycle-ms", Scale: 1, Show: "ms",
		RefUnit: "raw-ms", Note: "reference: truncate, losetup, mkfs.ext4, mount, umount, losetup -d, rm by hand, same run; goal ≤ 1.2×"},
	{Figure: "  Create", Bench: "PluginCycle", Unit: "create-ms", Scale: 1, Show: "ms"},
	{Figure: "  Mount", Bench: "PluginCycle", Unit: "mount-ms", Scale: 1, Show: "ms"},
	{Figure: "  Unmount", Bench: "PluginCycle", Unit: "unmount-ms", Scale: 1, Show: "ms"},
	{Figure: "  Remove", Bench: "PluginCycle", Unit: "remove-ms", Scale: 1, Show: "ms"},
	{Figure: "  etcd WAL fsyncs per cycle", Bench: "PluginCycle", Unit: "etcd-fsyncs/cycle", Scale: 1, Show: ""},
	{Figure: "plugin cycle, Ceph via rbd-fuse + loop, 64 MB ext4", Bench: "PluginCycleCeph", Unit: "cycle-ms", Scale: 1, Show: "ms",
		RefUnit: "raw-ms", Note: "reference: rbd create, rbd-fuse, losetup, mkfs.ext4, mount, umount, losetup -d, rbd-fuse stopped, rbd rm by hand, same run"},
	{Figure: "  Create", Bench: "PluginCycleCeph", Unit: "create-ms", Scale: 1, Show: "ms"},
	{Figure: "  Mount", Bench: "PluginCycleCeph", Unit: "mount-ms", Scale: 1, Show: "ms"},
	{Figure: "  Unmount", Bench: "PluginCycleCeph", Unit: "unmount-ms", Scale: 1, Show: "ms"},
	{Figure: "  Remove", Bench: "PluginCycleCeph", Unit: "remove-ms", Scale: 1, Show: "ms"},
	{Figure: "docker run --rm IMAGE true with a volume (Get, Mount, Unmount)", Bench: "DockerRunWithVolume", Unit: "with-volume-ms", Scale: 1, Show: "ms",
		RefUnit: "without-ms", Note: "reference: the same docker run without a volume, same run"},
	{Figure: "  time the plugin adds to docker run", Bench: "DockerRunWithVolume", Unit: "added-ms", Scale: 1, Show: "ms"},
	{Figure: "snapshot freeze, xfs data dir (reflink clone)", Bench: "SnapshotFreeze/xfs-reflink", Unit: "frozen-ms/op", Scale: 1, Show: "ms", Target: 50,
		Note: "1 GiB volume holding 500 MiB (-short: 64/16 MiB); target ≤ 50 ms"},
	{Figure: "snapshot freeze, Ceph, monitors' defaults", Bench: "SnapshotFreezeCeph/monitors-default", Unit: "frozen-ms/op", Scale: 1, Show: "ms", Target: 50,
		Note: "as above (rbd-fuse + loop); the monitors allocate the snapshot id after paxos_propose_interval (1 s) since their last commit"},
	{Figure: "snapshot freeze, Ceph, paxos_propose_interval 0.02 s", Bench: "SnapshotFreezeCeph/monitors-propose-20ms", Unit: "frozen-ms/op", Scale: 1, Show: "ms", Target: 50,
		Note: "the same volume, same run, monitors set to paxos_propose_interval 0.02, paxos_min_wait 0.005"},
	{Figure: "snapshot freeze, ext4 data dir (data copy)", Bench: "SnapshotFreeze/ext4-copy", Unit: "frozen-ms/op", Scale: 1, Show: "ms", Target: 50,
		Note: "as above; a copy is frozen as long as its data takes to copy"},
	{Figure: "volsupervisor: snapshot lateness p50, 10,000 volumes every minute", Bench: "Supervisor10000Volumes", Unit: "late-p50-ms", Scale: 1, Show: "ms",
		Target: 60000, Note: "counting snapshotter (a fake); -short: 200 volumes every 2 s; target: within its minute"},
	{Figure: "volsupervisor: snapshot lateness p99", Bench: "Supervisor10000Volumes", Unit: "late-p99-ms", Scale: 1, Show: "ms", Target: 60000},
	{Figure: "volsupervisor: CPU of the leader", Bench: "Supervisor10000Volumes", Unit: "cpu-%core", Scale: 1, Show: "% of a core",
		Target: 5, Note: "etcd runs as its own process (next row); target < 5 %"},
	{Figure: "  etcd's CPU meanwhile", Bench: "Supervisor10000Volumes", Unit: "etcd-cpu-%core", Scale: 1, Show: "% of a core"},
	{Figure: "volsupervisor: etcd writes per snapshot", Bench: "Supervisor10000Volumes", Unit: "etcd-writes/snapshot", Scale: 1, Show: ""},
	{Figure: "volsupervisor: etcd requests per snapshot", Bench: "Supervisor10000Volumes", Unit: "etcd-requests/snapshot", Scale: 1, Show: "", Note: "every gRPC call etcd answered, reads included"},
	{Figure: "volsupervisor: Go heap in use", Bench: "Supervisor10000Volumes", Unit: "heap-MB", Scale: 1, Show: "MiB"},
	{Figure: "volsupervisor, real local backend: lateness p50, 1,000 volumes every minute", Bench: "Supervisor1000LocalVolumes", Unit: "late-p50-ms", Scale: 1, Show: "ms",
		Target: 60000, Note: "real sparse copies of 8 MB images holding 256 KiB; -short: 50 volumes every 2 s"},
	{Figure: "  lateness p99", Bench: "Supervisor1000LocalVolumes", Unit: "late-p99-ms", Scale: 1, Show: "ms", Target: 60000},
	{Figure: "  CPU of the leader (copies included)", Bench: "Supervisor1000LocalVolumes", Unit: "cpu-%core", Scale: 1, Show: "% of a core", Target: 5},
	{Figure: "  etcd's CPU meanwhile", Bench: "Supervisor1000LocalVolumes", Unit: "etcd-cpu-%core", Scale: 1, Show: "% of a core"},
	{Figure: "volcli volume list-all", Bench: "VolcliListAll", Unit: "sec/op", Scale: 1e3, Show: "ms", Sized: true},
	{Figure: "REST GET /v1/volumes (decoded)", Bench: "RESTListAll", Unit: "sec/op", Scale: 1e3, Show: "ms", Sized: true},
	{Figure: "volmaster resident memory", Bench: "VolmasterMemory", Unit: "rss-MB", Scale: 1, Show: "MiB", Sized: true},
	{Figure: "volcli volume list-all @100,000 volumes", Bench: "VolcliListAll@100k", Unit: "sec/op", Scale: 1e3, Show: "ms", Target: 300,
		Note: "target ≤ 300 ms"},
	{Figure: "REST GET /v1/volumes (decoded) @100,000 volumes", Bench: "RESTListAll@100k", Unit: "sec/op", Scale: 1e3, Show: "ms", Target: 200,
		Note: "target ≤ 200 ms"},
	{Figure: "volmaster resident memory @100,000 volumes", Bench: "VolmasterMemory@100k", Unit: "rss-MB", Scale: 1, Show: "MiB"},
	{Figure: "volmaster Go heap in use @100,000 volumes", Bench: "VolmasterMemory@100k", Unit: "heap-MB", Scale: 1, Show: "MiB"},
	{Figure: "REST GET one volume", Bench: "RESTGetVolume", Unit: "req/s", Scale: 1, Show: "req/s"},
	{Figure: "lease renewals, 1,000 mounts on one host", Bench: "LeaseCost1000Locks", Unit: "renewals/s", Scale: 1, Show: "/s"},
	{Figure: "etcd puts, 1,000 mounts idle", Bench: "LeaseCost1000Locks", Unit: "puts/s", Scale: 1, Show: "/s"},
	{Figure: "runtime long-poll requests, 1,000 mounts", Bench: "RuntimeWatch1000Mounts", Unit: "requests/s", Scale: 1, Show: "/s"},
	{Figure: "volcli volume list-all, 2 volmasters on a 3-member etcd", Bench: "HAControlPlane", Unit: "ha-listall-ms", Scale: 1, Show: "ms", Sized: true,
		RefUnit: "one-listall-ms", Note: "reference: one volmaster on its embedded etcd member, same run"},
	{Figure: "volume GETs, 2 volmasters on a 3-member etcd", Bench: "HAControlPlane", Unit: "ha-get-req/s", Scale: 1, Show: "req/s",
		RefUnit: "one-get-req/s", Note: "reference as above; 8 keep-alive clients spread over the volmasters"},
	{Figure: "volume creates, 2 volmasters on a 3-member etcd", Bench: "HAControlPlane", Unit: "ha-creates/s", Scale: 1, Show: "/s",
		RefUnit: "one-creates/s", Note: "reference as above; 8 parallel clients; each create is durable on a majority of members"},
	{Figure: "failover after kill -9 of a volplugin: the next host mounts", Bench: "FailoverAfterKill9", Unit: "failover-ms", Scale: 1, Show: "ms",
		RefUnit: "ttl-ms", Note: "reference: the lease TTL of the run (3 s), which the dead host's lock must outlive"},
	{Figure: "runtime change reaching volplugin", Bench: "RuntimeWatch1000Mounts", Unit: "change-ms", Scale: 1, Show: "ms"},
}

// Results reads `go test -bench` output and adds every result to got by
// its name without GOMAXPROCS ("SnapshotFreeze/xfs-reflink") and label.
func Results(got map[string]*benchfmt.Result, out []byte, label string) error {
	r := benchfmt.NewReader(bytes.NewReader(out), "go test")
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		base, parts := res.Name.Parts()
		name := string(base)
		for _, p := range parts {
			if strings.HasPrefix(string(p), "/") {
				name += string(p)
			}
		}
		got[name+label] = res.Clone()
	}
	return r.Err()
}

// Print writes the table of rows from results; a figure no benchmark
// produced says so. size names the listing benchmarks' volume count.
func Print(w io.Writer, rows []Row, results map[string]*benchfmt.Result, size string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tREFERENCE\tRATIO\tNOTE")
	for _, row := range rows {
		figure := row.Figure
		if row.Sized {
			figure += " @" + size
		}
		res := results[row.Bench]
		v, ok := value(res, row.Unit)
		if !ok {
			fmt.Fprintf(tw, "%s\tnot measured\t-\t-\t%s\n", figure, row.Note)
			continue
		}
		v *= row.Scale
		ref, ratio := "-", "-"
		switch {
		case row.RefUnit != "":
			if r, ok := value(res, row.RefUnit); ok && r > 0 {
				ref = fmt.Sprintf("%s %s", num(r*row.Scale), row.Show)
				ratio = fmt.Sprintf("%.2f×", v/(r*row.Scale))
			}
		case row.Target > 0:
			ref = fmt.Sprintf("%s %s", num(row.Target), row.Show)
			ratio = fmt.Sprintf("%.2f×", v/row.Target)
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", figure, num(v), row.Show, ref, ratio, row.Note)
	}
	return tw.Flush()
}

// value is res's figure in unit as the benchmark reported it: benchfmt
// rewrites some units (heap-MB becomes heap-B, in decimal bytes), so the
// unit printed wins over the normalised one.
func value(res *benchfmt.Result, unit string) (float64, bool) {
	if res == nil {
		return 0, false
	}
	for _, v := range res.Values {
		if v.OrigUnit == unit {
			return v.OrigValue, true
		}
	}
	return res.Value(unit)
}

// num prints a figure with three significant digits or more.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
