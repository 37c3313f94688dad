package volcli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
)

// The list commands print the same lines as always when stdout is not a
// terminal; -o table|wide asks for a table, -q for names, --json for JSON,
// and any two of those are a usage error. The tables come from a real
// volmaster, with a mount lock as volplugin stores it.
func TestListOutputModes(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok("", "volume", "create", "p/a")
	h.ok("", "volume", "create", "p/b")
	since := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	h.putUse(config.Use{Volume: config.VolumeRef{Policy: "p", Name: "a"}, Hostname: "host-a", MountIDs: []string{"m1"}, Since: since})
	snap := strings.TrimSpace(h.ok("", "volume", "snapshot", "take", "p/a"))

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"volume", "list-all"}, "p/a\np/b\n"},
		{[]string{"volume", "list", "p"}, "a\nb\n"},
		{[]string{"volume", "list-all", "-q"}, "p/a\np/b\n"},
		{[]string{"volume", "list", "p", "--quiet"}, "a\nb\n"},
		{[]string{"volume", "list", "p", "-o", "plain"}, "a\nb\n"},
		{[]string{"policy", "list"}, "p\n"},
		{[]string{"use", "list"}, "p/a\thost-a\tm1\n"},
		{[]string{"use", "list", "-q"}, "p/a\n"},
		{[]string{"volume", "snapshot", "list", "p/a", "-q"}, snap + "\n"},
		{[]string{"supervisor", "status", "-q"}, ""},
		{[]string{"volume", "list-all", "-o", "table"}, "" +
			"VOLUME  SIZE  BACKEND  HOST    MOUNTED SINCE\n" +
			"p/a     10MB  local    host-a  2026-11-23T09:00:00Z\n" +
			"p/b     10MB  local    -       -\n"},
		{[]string{"use", "list", "-o", "table"}, "" +
			"VOLUME  HOST    MOUNTS  SINCE\n" +
			"p/a     host-a  1       2026-11-23T09:00:00Z\n"},
		{[]string{"policy", "list", "-o", "table"}, "" +
			"POLICY  BACKEND  SIZE  FILESYSTEM  SNAPSHOTS\n" +
			"p       local    10MB  ext4        off\n"},
		{[]string{"supervisor", "status", "-o", "table"}, "no volsupervisor is running\n"},
	} {
		if got := h.ok("", tc.args...); got != tc.want {
			t.Errorf("volcli %s printed\n%s\nwant\n%s", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if got := h.ok("", "volume", "snapshot", "list", "p/a", "-o", "wide"); !strings.HasPrefix(got, "SNAPSHOT  ") || !strings.Contains(got, snap) {
		t.Errorf("snapshot list -o wide:\n%s", got)
	}
	wide := h.ok("", "volume", "list", "p", "-o", "wide")
	if lines := strings.Split(wide, "\n"); !strings.Contains(lines[0], "FILESYSTEM") || !strings.Contains(lines[1], "ext4") || !strings.HasPrefix(lines[1], "a ") {
		t.Errorf("volume list -o wide:\n%s", wide)
	}
	if refs := decode[[]config.VolumeRef](t, h.ok("", "volume", "list-all", "--json")); len(refs) != 2 {
		t.Errorf("list-all --json = %v", refs)
	}

	before := h.dump()
	h.fails(ExitUsage, "exclude each other", "", "--json", "volume", "list-all", "-q")
	h.fails(ExitUsage, "exclude each other", "", "volume", "list-all", "-q", "-o", "wide")
	h.fails(ExitUsage, `--output "yaml": want table, wide or plain`, "", "token", "list", "-o", "yaml")
	h.sameDump(before, "refused list flags")
	// volume create's -o is still --opt.
	h.ok("", "volume", "create", "p/c", "-o", "size=20MB")
	if v := decode[config.Volume](t, h.ok("", "volume", "get", "p/c")); v.Create.Size != "20MB" {
		t.Errorf("create -o size=20MB made size %q", v.Create.Size)
	}
}

// openPTY returns a pseudo-terminal: what volcli writes to tty can be read
// from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test terminal output: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// onTerminal runs volcli with stdout and stderr on a pseudo-terminal and
// returns what it printed there (line ends as the terminal shows them,
// "\r\n", made "\n").
func (h *harness) onTerminal(args ...string) (int, string) {
	h.t.Helper()
	master, tty := openPTY(h.t)
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, master) // ends with EIO once tty is closed
		done <- b.String()
	}()
	code := Run(append([]string{"volcli", "--volmaster", h.url}, args...), strings.NewReader(""), tty, tty)
	tty.Close()
	return code, strings.ReplaceAll(<-done, "\r\n", "\n")
}

// On a terminal, lists are tables without asking, and long operations show
// a progress line on stderr that they erase; in a pipe (every other test)
// neither happens.
func TestTerminalOutput(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "p")
	h.ok("", "volume", "create", "p/a")

	code, out := h.onTerminal("volume", "list-all")
	if code != 0 || out != "VOLUME  SIZE  BACKEND  HOST  MOUNTED SINCE\np/a     10MB  local    -     -\n" {
		t.Errorf("list-all on a terminal: exit %d, printed %q", code, out)
	}
	if code, out := h.onTerminal("volume", "list-all", "-o", "plain"); code != 0 || out != "p/a\n" {
		t.Errorf("list-all -o plain on a terminal: exit %d, printed %q", code, out)
	}

	const erase = "\r\x1b[K"
	code, out = h.onTerminal("volume", "resize", "p/a", "20MB")
	if code != 0 || !strings.HasPrefix(out, erase) || !strings.Contains(out, " growing p/a to 20MB (0s)") ||
		!strings.HasSuffix(out, erase+"volume p/a resized to 20MB\n") {
		t.Errorf("resize on a terminal: exit %d, printed %q", code, out)
	}
	snap := strings.TrimSpace(h.ok("", "volume", "snapshot", "take", "p/a"))
	code, out = h.onTerminal("volume", "snapshot", "copy", "p/a", snap, "b")
	if code != 0 || !strings.Contains(out, "copying snapshot "+snap+" of p/a to p/b") || !strings.HasSuffix(out, erase+"volume p/b created from "+snap+"\n") {
		t.Errorf("snapshot copy on a terminal: exit %d, printed %q", code, out)
	}

	// Not a terminal: no progress line at all.
	r := h.run("", "volume", "resize", "p/a", "30MB")
	if r.code != 0 || r.stderr != "" || r.stdout != "volume p/a resized to 30MB\n" {
		t.Errorf("resize in a pipe: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The OUTPUT help section names every command that takes -o, and only
// those.
func TestOutputHelpNamesEveryListCommand(t *testing.T) {
	help := strings.Join(strings.Fields(outputHelp), " ")
	list, _, _ := strings.Cut(help, ")")
	_, list, _ = strings.Cut(list, "(")
	names := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		names[strings.TrimSpace(s)] = true
	}
	var walk func(prefix string, cmds []*cli.Command)
	n := 0
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.Name)
			takes := slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), flagOutput) })
			named := names[path]
			if takes != named {
				t.Errorf("command %q: takes --output %v, named in the OUTPUT help %v", path, takes, named)
			}
			if takes {
				n++
			}
			walk(path, c.Subcommands)
		}
	}
	walk("", App(nil, io.Discard, io.Discard).Commands)
	if n != 7 {
		t.Errorf("%d commands take --output, want 7", n)
	}
}
