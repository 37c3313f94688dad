package volcli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
)

// snapNames lists the names of a volume's snapshots through volcli.
func (h *harness) snapNames(ref string) []string {
	h.t.Helper()
	var names []string
	for _, s := range decode[[]config.Snapshot](h.t, h.ok("", "--json", "volume", "snapshot", "list", ref)) {
		names = append(names, s.Name)
	}
	return names
}

// took checks that stdout is one snapshot name and returns it.
func took(t *testing.T, stdout string) string {
	t.Helper()
	name, ok := strings.CutSuffix(stdout, "\n")
	if !ok || strings.Contains(name, "\n") {
		t.Fatalf("snapshot take printed %q, want one name", stdout)
	}
	if _, err := config.ParseSnapshotName(name); err != nil {
		t.Fatalf("snapshot take printed %q: %v", stdout, err)
	}
	return name
}

func TestSnapshotTakeListCopy(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok("", "volume", "create", "p/v")
	if out := h.ok("", "volume", "snapshot", "list", "p/v"); out != "" {
		t.Errorf("list without snapshots = %q", out)
	}
	if out := h.ok("", "volume", "snapshot", "list", "p/v", "--json"); out != "[]\n" {
		t.Errorf("list --json without snapshots = %q, want []", out)
	}

	start := time.Now().Add(-time.Minute)
	first := took(t, h.ok("", "volume", "snapshot", "take", "p/v"))
	out := h.ok("", "volume", "snapshot", "list", "p/v")
	fields := strings.Split(strings.TrimSuffix(out, "\n"), "\t")
	if len(fields) != 4 || fields[0] != first || fields[2] == "" || (fields[3] != "copy" && fields[3] != "reflink") || strings.Contains(out, "\n\n") {
		t.Fatalf("list = %q, want one line %q TIME BY METHOD (copy or reflink)", out, first)
	}
	if tm, err := time.Parse(time.RFC3339, fields[1]); err != nil || tm.Before(start) {
		t.Errorf("list time %q: %v", fields[1], err)
	}
	second := decode[config.Snapshot](t, h.ok("", "volume", "snapshot", "take", "p/v", "--json"))
	if second.Name <= first || second.By == "" {
		t.Errorf("take --json = %+v (first %s)", second, first)
	}
	snaps := decode[[]config.Snapshot](t, h.ok("", "--json", "volume", "snapshot", "list", "p/v"))
	if len(snaps) != 2 || snaps[0].Name != first || snaps[1].Name != second.Name {
		t.Errorf("list --json = %+v", snaps)
	}

	if out := h.ok("", "volume", "snapshot", "copy", "p/v", first, "c"); out != "volume p/c created from "+first+"\n" {
		t.Errorf("copy printed %q", out)
	}
	if v := decode[config.Volume](t, h.ok("", "volume", "get", "p/c")); v.Ref().String() != "p/c" || v.Create.Size != "10MB" {
		t.Errorf("volume get p/c = %+v", v)
	}
	v := decode[config.Volume](t, h.ok("", "volume", "snapshot", "copy", "p/v", second.Name, "d", "--json"))
	if v.Ref().String() != "p/d" {
		t.Errorf("copy --json = %+v", v)
	}
	if got := h.ok("", "volume", "list", "p"); got != "c\nd\nv\n" {
		t.Errorf("volume list p = %q", got)
	}

	before := h.dump()
	h.fails(4, "volcli: volume p/c already exists", "", "volume", "snapshot", "copy", "p/v", first, "c")
	h.fails(4, "volcli: volume p/v already exists", "", "volume", "snapshot", "copy", "p/v", first, "v")
	h.fails(3, "volcli: snapshot 20200101T000000.000Z of volume p/v not found", "", "volume", "snapshot", "copy", "p/v", "20200101T000000.000Z", "e")
	h.fails(3, "volcli: snapshot "+first+" of volume p/nope not found", "", "volume", "snapshot", "copy", "p/nope", first, "e")
	h.fails(3, "volcli: snapshot "+first+" of volume nopolicy/v not found", "", "volume", "snapshot", "copy", "nopolicy/v", first, "e")
	h.fails(3, "volcli: volume p/nope not found", "", "volume", "snapshot", "list", "p/nope")
	h.fails(3, "volcli: volume p/nope not found", "", "volume", "snapshot", "take", "p/nope")
	h.fails(2, "is not a UTC timestamp", "", "volume", "snapshot", "copy", "p/v", "notatime", "e")
	h.fails(2, "", "", "volume", "snapshot", "copy", "p/v", "", "e")
	for _, name := range []string{"a b", "..", "-x", "", strings.Repeat("a", 65)} {
		h.fails(2, "volume name", "", "volume", "snapshot", "copy", "p/v", first, "--", name)
	}
	h.fails(2, `NEWNAME "p/e" must be a plain volume name`, "", "volume", "snapshot", "copy", "p/v", first, "p/e")
	for _, ref := range []string{"nopolicyslash", "a b/c", "p/..", "p/"} {
		h.fails(2, "", "", "volume", "snapshot", "take", ref)
		h.fails(2, "", "", "volume", "snapshot", "list", ref)
		h.fails(2, "", "", "volume", "snapshot", "copy", ref, first, "e")
	}
	h.fails(2, "want 3 arguments, got 2", "", "volume", "snapshot", "copy", "p/v", first)
	h.fails(2, "want 1 argument, got 0", "", "volume", "snapshot", "take")
	h.fails(2, `unknown command "bogus"`, "", "volume", "snapshot", "bogus")
	h.sameDump(before, "failed snapshot commands")
}

func TestSnapshotHooks(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok("", "volume", "create", "p/v")
	before := h.dump()

	// A failed --exec: no snapshot.
	h.fails(1, "volcli: --exec command failed (exit status 1): no snapshot taken", "", "volume", "snapshot", "take", "p/v", "--exec", "false")
	h.fails(1, "volcli: --exec command failed (exit status 3): no snapshot taken", "", "volume", "snapshot", "take", "p/v", "--exec", "exit 3", "--after", "echo must not run >&2")
	h.fails(1, "volcli: --exec command failed (timed out after 1s): no snapshot taken", "", "--timeout", "1s", "volume", "snapshot", "take", "p/v", "--exec", "exec sleep 60")
	// Nothing runs for a missing volume or an empty command.
	h.fails(3, "volcli: volume p/nope not found", "", "volume", "snapshot", "take", "p/nope", "--exec", "echo ran >&2", "--after", "echo ran >&2")
	h.fails(2, "--exec command is empty", "", "volume", "snapshot", "take", "p/v", "--exec", " ", "--after", "echo ran >&2")
	h.fails(2, "--after command is empty", "", "volume", "snapshot", "take", "p/v", "--exec", "echo ran >&2", "--after=")
	if names := h.snapNames("p/v"); len(names) != 0 {
		t.Errorf("snapshots after failed --exec: %v", names)
	}
	h.sameDump(before, "failed --exec")

	// --exec and --after succeed; their output goes to stderr, through a shell.
	r := h.run("", "volume", "snapshot", "take", "p/v", "--exec", "echo flush; echo flushed >&2", "--after", "echo after >&2")
	if r.code != 0 || r.stderr != "flush\nflushed\nafter\n" {
		t.Fatalf("take with hooks: exit %d, stderr %q", r.code, r.stderr)
	}
	snap := took(t, r.stdout)
	if names := h.snapNames("p/v"); !slices.Equal(names, []string{snap}) {
		t.Errorf("snapshots = %v, want [%s]", names, snap)
	}

	// A failed --after: exit 1, but the snapshot exists and is printed.
	r = h.run("", "volume", "snapshot", "take", "p/v", "--after", "false")
	checkFail(t, r, 1, "but --after command failed (exit status 1)", nil)
	snap2 := took(t, r.stdout)
	if !strings.Contains(r.stderr, "snapshot "+snap2+" of volume p/v taken") {
		t.Errorf("stderr %q does not name the snapshot taken", r.stderr)
	}
	if names := h.snapNames("p/v"); !slices.Equal(names, []string{snap, snap2}) {
		t.Errorf("snapshots = %v, want [%s %s]", names, snap, snap2)
	}

	// --after runs when the snapshot fails (to thaw what --exec froze).
	b, err := json.Marshal(store.OpLock{Op: "resize", Owner: "tester", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ref := config.VolumeRef{Policy: "p", Name: "v"}
	if _, err := h.etcd.Put(h.ctx, h.keys.OpLock(ref), string(b)); err != nil {
		t.Fatal(err)
	}
	r = h.run("", "volume", "snapshot", "take", "p/v", "--exec", "true", "--after", "echo thawed >&2")
	if msg, ok := strings.CutPrefix(r.stderr, "thawed\n"); r.code != 4 || !ok || !strings.HasPrefix(msg, "volcli: volume p/v is busy") {
		t.Errorf("take of a busy volume: exit %d, stderr %q", r.code, r.stderr)
	}
	h.fails(4, "is busy (resize by tester since", "", "volume", "snapshot", "take", "p/v", "--after", "exit 2")
	line := h.fails(4, "; --after command failed too (exit status 2)", "", "volume", "snapshot", "take", "p/v", "--after", "exit 2")
	if !strings.Contains(line, "busy") {
		t.Errorf("message %q does not say why the snapshot failed", line)
	}
	if names := h.snapNames("p/v"); len(names) != 2 {
		t.Errorf("snapshots of a busy volume = %v", names)
	}
}

func TestSnapshotHelpAndFlags(t *testing.T) {
	r := runVolcli("", "volume", "snapshot", "take", "--help")
	for _, want := range []string{"POLICY/NAME", "--exec CMD", "--after CMD", "/bin/sh -c"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("snapshot take --help: exit %d, output %q lacks %q", r.code, r.stdout, want)
		}
	}
	for _, args := range [][]string{{"volume", "snapshot"}, {"volume", "snapshot", "--help"}, {"volume", "snapshot", "copy", "-h"}} {
		if r := runVolcli("", args...); r.code != 0 || !strings.Contains(r.stdout, "snapshot") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := runVolcli("", "volume", "--help"); !strings.Contains(r.stdout, "snapshot") {
		t.Errorf("volume --help does not list snapshot: %q", r.stdout)
	}
	app := App(nil, nil, nil)
	for _, c := range []struct{ in, want []string }{
		{[]string{"volcli", "volume", "snapshot", "take", "p/n", "--exec", "psql -c 'CHECKPOINT'", "--json", "--after=echo x"},
			[]string{"volcli", "--json", "volume", "snapshot", "take", "--exec", "psql -c 'CHECKPOINT'", "--after=echo x", "p/n"}},
		{[]string{"volcli", "volume", "snapshot", "copy", "p/n", "S", "N", "--timeout", "1s"},
			[]string{"volcli", "--timeout", "1s", "volume", "snapshot", "copy", "p/n", "S", "N"}},
	} {
		if got := reorderArgs(app, c.in); !slices.Equal(got, c.want) {
			t.Errorf("reorder %q = %q, want %q", c.in, got, c.want)
		}
	}
}
