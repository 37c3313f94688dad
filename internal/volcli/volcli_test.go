package volcli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// The original volplugin lost track of volumes when their policy was
// re-uploaded; every volume must stay listed with the policy it was made from.
func TestReuploadedPolicyKeepsVolumes(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	if out := h.ok("", "volume", "create", "policy1/test"); out != "volume policy1/test created\n" {
		t.Errorf("create printed %q", out)
	}
	if out := h.ok(localPolicy("20MB"), "policy", "upload", "policy1"); out != "policy policy1 uploaded (revision 2)\n" {
		t.Errorf("second upload printed %q", out)
	}
	h.ok("", "volume", "create", "policy1/test2")

	if got, want := h.ok("", "volume", "list-all"), "policy1/test\npolicy1/test2\n"; got != want {
		t.Errorf("list-all = %q, want %q", got, want)
	}
	if got, want := h.ok("", "volume", "list", "policy1"), "test\ntest2\n"; got != want {
		t.Errorf("list policy1 = %q, want %q", got, want)
	}
	for name, size := range map[string]string{"policy1/test": "10MB", "policy1/test2": "20MB"} {
		out := h.ok("", "volume", "get", name)
		if !strings.Contains(out, "\n  \"policy\": \"policy1\"") {
			t.Errorf("volume get %s is not 2-space indented JSON: %q", name, out)
		}
		v := decode[config.Volume](t, out)
		if v.Create.Size != size || v.Ref().String() != name {
			t.Errorf("volume get %s = %s size %q, want size %s", name, v.Ref(), v.Create.Size, size)
		}
	}
	// The policy now says 20MB; the first volume keeps its 10MB.
	if p := decode[config.Policy](t, h.ok("", "policy", "get", "policy1")); p.Create.Size != "20MB" {
		t.Errorf("policy get: size %q, want 20MB", p.Create.Size)
	}
}

func TestPolicyRevisions(t *testing.T) {
	h := newHarness(t)
	start := time.Now().Add(-time.Minute)
	for _, size := range []string{"10MB", "20MB", "30MB"} {
		h.ok(localPolicy(size), "policy", "upload", "p")
	}
	out := h.ok("", "policy", "history", "list", "p")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("history list = %q, want 3 lines", out)
	}
	for i, l := range lines {
		n, ts, ok := strings.Cut(l, "\t")
		if want := string(rune('1' + i)); !ok || n != want {
			t.Errorf("history line %d = %q, want revision %s", i, l, want)
		}
		if tm, err := time.Parse(time.RFC3339, ts); err != nil || tm.Before(start) {
			t.Errorf("history line %q: time %q: %v", l, ts, err)
		}
	}
	revs := decode[[]config.PolicyRevision](t, h.ok("", "--json", "policy", "history", "list", "p"))
	if len(revs) != 3 || revs[0].Revision != 1 || revs[2].Revision != 3 {
		t.Errorf("history list --json = %+v", revs)
	}
	for rev, size := range map[string]string{"1": "10MB", "2": "20MB", "3": "30MB"} {
		if p := decode[config.Policy](t, h.ok("", "policy", "history", "get", "p", rev)); p.Create.Size != size {
			t.Errorf("history get p %s: size %q, want %s", rev, p.Create.Size, size)
		}
	}
	h.fails(3, "volcli: policy p revision 4 not found", "", "policy", "history", "get", "p", "4")
	h.fails(2, "revision", "", "policy", "history", "get", "p", "0")
	h.fails(2, "revision", "", "policy", "history", "get", "p", "one")

	// History survives deletion.
	if out := h.ok("", "policy", "delete", "p"); out != "policy p deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	h.fails(3, "volcli: policy p not found", "", "policy", "get", "p")
	h.ok("", "policy", "history", "get", "p", "1")
}

func TestConflicts(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	h.ok("", "volume", "create", "policy1/test")
	h.fails(4, "volcli: volume policy1/test already exists", "", "volume", "create", "policy1/test")

	// A mounted volume cannot be removed.
	h.putUse(config.Use{Volume: config.VolumeRef{Policy: "policy1", Name: "test"}, Hostname: "host1", MountIDs: []string{"m1", "m2"}})
	h.fails(4, "volcli: volume policy1/test is mounted on host", "", "volume", "remove", "policy1/test")
	h.ok("", "volume", "get", "policy1/test")
}

func TestNotFound(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	h.ok("", "volume", "create", "policy1/test")
	before := h.dump()
	for _, c := range []struct {
		msg  string
		args []string
	}{
		{"volume policy1/nope not found", []string{"volume", "get", "policy1/nope"}},
		{"volume policy1/nope not found", []string{"volume", "remove", "policy1/nope"}},
		{"volume policy1/nope not found", []string{"volume", "remove", "--force", "policy1/nope"}},
		{"volume policy1/nope not found", []string{"volume", "runtime", "get", "policy1/nope"}},
		{"volume nopolicy/x not found", []string{"volume", "get", "nopolicy/x"}},
		{"policy nope not found", []string{"policy", "get", "nope"}},
		{"policy nope not found", []string{"policy", "delete", "nope"}},
		{"policy nope not found", []string{"policy", "history", "list", "nope"}},
		{"policy nope not found", []string{"volume", "create", "nope/vol"}},
		{"policy policy1 revision 7 not found", []string{"policy", "history", "get", "policy1", "7"}},
		{"policy nope revision 1 not found", []string{"policy", "history", "get", "nope", "1"}},
		{"mount lock of volume policy1/test not found", []string{"use", "get", "policy1/test"}},
		{"mount lock of volume policy1/test not found", []string{"use", "force-remove", "policy1/test"}},
	} {
		line := h.fails(3, c.msg, "", c.args...)
		if line != "volcli: "+c.msg && !strings.HasPrefix(line, "volcli: "+c.msg+" ") {
			t.Errorf("%v: message %q, want it to start with %q", c.args, line, "volcli: "+c.msg)
		}
	}
	h.fails(3, "volume policy1/nope not found", "{}", "volume", "runtime", "upload", "policy1/nope")
	h.sameDump(before, "not-found commands")

	// Remove, then the volume is gone.
	if out := h.ok("", "volume", "remove", "policy1/test"); !strings.HasPrefix(out, "volume policy1/test moved to the trash as ") {
		t.Errorf("remove printed %q", out)
	}
	h.fails(3, "volcli: volume policy1/test not found", "", "volume", "get", "policy1/test")
}

func TestInvalidInputChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	h.ok("", "volume", "create", "policy1/test")
	h.ok(`{"TTL": 30}`, "global", "upload")
	before := h.dump()

	long := strings.Repeat("a", 65)
	for _, name := range []string{"a b/c", "../x", "p/..", "policy1/" + long, long + "/x", "nopolicyslash", "policy1/", "/x", "policy1/a/b", "policy1/-x"} {
		h.fails(2, "", "", "volume", "create", name)
		h.fails(2, "", "", "volume", "get", name)
		h.fails(2, "", "", "volume", "remove", "--force", name)
		h.fails(2, "", `{}`, "volume", "runtime", "upload", name)
		h.fails(2, "", "", "use", "force-remove", name)
	}
	for _, name := range []string{"a b", "..", ".", long, "-x", "a/b"} {
		h.fails(2, "", localPolicy("10MB"), "policy", "upload", "--", name)
		h.fails(2, "", "", "policy", "get", "--", name)
		h.fails(2, "", "", "policy", "delete", "--", name)
		h.fails(2, "", "", "volume", "list", "--", name)
	}
	for _, opt := range []string{"size=0", "size=-1", "size=lots", "size=", "bogus=1", "noequals", "=x", "snapshots=maybe", "filesystem=zfs"} {
		h.fails(2, "", "", "volume", "create", "policy1/new", "--opt", opt)
	}
	h.fails(2, "given twice", "", "volume", "create", "policy1/new", "--opt", "size=1MB", "--opt", "size=2MB")
	for _, doc := range []string{"", " \n\t", "{", "not json", `{"backend": "local"}`, `{"backend": "bogus", "create": {"size": "1MB"}}`,
		`{"backend": "local", "create": {"size": "0"}}`, `{"backend": "local", "create": {"size": "10MB"}, "colour": "red"}`,
		localPolicy("10MB") + localPolicy("10MB"), "[]"} {
		h.fails(2, "", doc, "policy", "upload", "policy1")
		h.fails(2, "", doc, "policy", "upload", "policy2")
	}
	for _, doc := range []string{"", "\n", "{", `{"bogus": 1}`, `{"snapshots": true}`, `{"rate-limit": {"read-bps": -1}}`} {
		h.fails(2, "", doc, "volume", "runtime", "upload", "policy1/test")
	}
	for _, doc := range []string{"", "  ", "{", `{"TTL": -1}`, `{"MountPath": "relative"}`, `{"Colour": 1}`} {
		h.fails(2, "", doc, "global", "upload")
	}
	h.fails(2, "no JSON on stdin (use --file or pipe a document)", "", "global", "upload")
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte("\n \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.fails(2, "is empty", "", "global", "upload", "--file", empty)
	h.fails(2, "--file", "", "policy", "upload", "p", "--file", filepath.Join(t.TempDir(), "missing.json"))
	h.sameDump(before, "invalid input")

	// The messages are readable: no sentinel tail, no regexp for a bad size.
	line := h.fails(2, "size", "", "volume", "create", "policy1/new", "--opt", "size=lots")
	if strings.HasSuffix(line, "invalid input") {
		t.Errorf("message %q ends with the sentinel text", line)
	}
	h.fails(2, `unknown option "bogus"`, "", "volume", "create", "policy1/new", "--opt", "bogus=1")
	h.fails(2, `volcli: policy name "a b" is not a valid name (a letter or digit`, "", "volume", "get", "a b/c")
	h.fails(2, `volcli: volume "nopolicyslash" must be given as POLICY/NAME`, "", "volume", "get", "nopolicyslash")
}

func TestUsageErrors(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		msg  string
		args []string
	}{
		{"want 1 argument, got 0", []string{"volume", "get"}},
		{"want 1 argument, got 2", []string{"volume", "get", "a/b", "c/d"}},
		{"want 0 arguments, got 1", []string{"policy", "list", "x"}},
		{"want 2 arguments, got 1", []string{"policy", "history", "get", "p"}},
		{`unknown command "bogus"`, []string{"bogus"}},
		{`unknown command "bogus"`, []string{"volume", "bogus"}},
		{`unknown command "bogus"`, []string{"volume", "runtime", "bogus"}},
		{"flag provided but not defined", []string{"--bogus", "policy", "list"}},
		{"flag provided but not defined", []string{"volume", "create", "p/v", "--bogus"}},
		{"flag provided but not defined", []string{"policy", "list", "--force"}},
		{"--timeout", []string{"--timeout", "0s", "policy", "list"}},
		{"invalid value", []string{"--timeout", "soon", "policy", "list"}},
		{"flag needs an argument: -opt", []string{"volume", "create", "p/v", "--opt"}},
		{"flag needs an argument: -timeout", []string{"volume", "list-all", "--timeout"}},
	} {
		h.fails(2, c.msg, "", c.args...)
	}
	checkFail(t, runVolcli("", "--volmaster", "ftp://x", "policy", "list"), 2, "volmaster URL", nil)
}

func TestFlagsAfterArguments(t *testing.T) {
	h := newHarness(t)
	h.ok("", "policy", "upload", "policy1", "--file", filepath.Join("testdata", "original-policies", "ceph", "policy1.json"))
	h.ok(localPolicy("10MB"), "policy", "upload", "loc")
	h.ok("", "volume", "create", "loc/a", "--opt", "size=20MB", "-o", "snapshots=false")
	h.ok("", "volume", "create", "--opt=size=30MB", "loc/b")
	h.ok("", "volume", "create", "loc/c", "--json")
	for name, size := range map[string]string{"loc/a": "20MB", "loc/b": "30MB", "loc/c": "10MB"} {
		if v := decode[config.Volume](t, h.ok("", "volume", "get", name)); v.Create.Size != size {
			t.Errorf("%s: size %q, want %s", name, v.Create.Size, size)
		}
	}
	refs := decode[[]config.VolumeRef](t, h.ok("", "volume", "list-all", "--json"))
	if len(refs) != 3 {
		t.Errorf("list-all --json after the command = %v", refs)
	}
	h.ok("", "volume", "remove", "loc/a", "--force")
	h.fails(3, "volume loc/a not found", "", "volume", "get", "loc/a")
}

// Every policy, runtime and global file of the original system tests is
// accepted unchanged.
func TestOriginalFiles(t *testing.T) {
	h := newHarness(t)
	root := filepath.Join("testdata", "original-policies")
	var uploaded []string
	for _, dir := range []string{"ceph", "nfs"} {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no %s policies: %v", dir, err)
		}
		for _, f := range files {
			name := dir + "-" + strings.TrimSuffix(filepath.Base(f), ".json")
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if out := h.ok(string(data), "policy", "upload", name); out != "policy "+name+" uploaded (revision 1)\n" {
				t.Errorf("upload %s printed %q", f, out)
			}
			uploaded = append(uploaded, name)
		}
	}
	slices.Sort(uploaded)
	if got := strings.Fields(h.ok("", "policy", "list")); !slices.Equal(got, uploaded) {
		t.Errorf("policy list = %v, want %v", got, uploaded)
	}
	p := decode[config.Policy](t, h.ok("", "policy", "get", "ceph-fs"))
	if p.Create.Filesystem != "btrfs" || !slices.Equal(p.FileSystems["btrfs"], config.FSCommand{"mkfs.btrfs", "%"}) {
		t.Errorf("ceph-fs = %+v", p)
	}
	if p := decode[config.Policy](t, h.ok("", "policy", "get", "nfs-unlocked")); !p.Unlocked || p.Backends.Mount != config.BackendNFS {
		t.Errorf("nfs-unlocked = %+v", p)
	}

	globals, err := filepath.Glob(filepath.Join(root, "globals", "*.json"))
	if err != nil || len(globals) == 0 {
		t.Fatalf("no globals: %v", err)
	}
	for _, f := range globals {
		h.ok("", "global", "upload", "--file", f)
	}
	h.ok("", "global", "upload", "--file", filepath.Join(root, "globals", "mountpath_global.json"))
	g := decode[config.Global](t, h.ok("", "global", "get"))
	if g != (config.Global{TTL: 5, Debug: true, Timeout: 10, MountPath: "/mnt/test"}) {
		t.Errorf("global get = %+v", g)
	}

	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	h.ok("", "volume", "create", "policy1/test")
	rt1, err := os.ReadFile(filepath.Join(root, "runtime1.json"))
	if err != nil {
		t.Fatal(err)
	}
	h.ok(string(rt1), "volume", "runtime", "upload", "policy1/test")
	rt := decode[config.RuntimeOptions](t, h.ok("", "volume", "runtime", "get", "policy1/test"))
	if !rt.Snapshots || rt.Snapshot.Keep != 15 || time.Duration(rt.Snapshot.Frequency) != time.Minute {
		t.Errorf("runtime after runtime1.json = %+v", rt)
	}
	h.ok("", "volume", "runtime", "upload", "policy1/test", "--file", filepath.Join(root, "iops1.json"))
	rt = decode[config.RuntimeOptions](t, h.ok("", "volume", "runtime", "get", "policy1/test"))
	if rt.RateLimit.WriteBPS != 1000 || rt.RateLimit.ReadBPS != 10 || rt.Snapshots {
		t.Errorf("runtime after iops1.json = %+v", rt)
	}
	if v := decode[config.Volume](t, h.ok("", "volume", "get", "policy1/test")); v.Runtime != rt {
		t.Errorf("volume get runtime = %+v, want %+v", v.Runtime, rt)
	}
}

func TestJSONOutput(t *testing.T) {
	h := newHarness(t)
	if out := h.ok("", "use", "list"); out != "" {
		t.Errorf("use list on empty = %q", out)
	}
	for _, args := range [][]string{{"use", "list"}, {"policy", "list"}, {"volume", "list-all"}, {"volume", "list", "none"}} {
		if out := h.ok("", append([]string{"--json"}, args...)...); out != "[]\n" {
			t.Errorf("--json %v on empty = %q, want []", args, out)
		}
	}

	h.ok(localPolicy("10MB"), "policy", "upload", "policy1")
	h.ok(localPolicy("10MB"), "policy", "upload", "policy2")
	p := decode[config.Policy](t, h.ok(localPolicy("10MB"), "--json", "policy", "upload", "policy3"))
	if p.Name != "policy3" || p.Backends.CRUD != config.BackendLocal || p.Create.Filesystem != config.DefaultFilesystem {
		t.Errorf("upload --json = %+v", p)
	}
	v := decode[config.Volume](t, h.ok("", "--json", "volume", "create", "policy1/a", "--opt", "size=5MB"))
	if v.Create.Size != "5MB" || v.PolicyRevision != 1 {
		t.Errorf("create --json = %+v", v)
	}
	h.ok("", "volume", "create", "policy2/b")

	if names := decode[[]string](t, h.ok("", "--json", "policy", "list")); !slices.Equal(names, []string{"policy1", "policy2", "policy3"}) {
		t.Errorf("policy list --json = %v", names)
	}
	refs := decode[[]config.VolumeRef](t, h.ok("", "--json", "volume", "list-all"))
	if want := []config.VolumeRef{{Policy: "policy1", Name: "a"}, {Policy: "policy2", Name: "b"}}; !slices.Equal(refs, want) {
		t.Errorf("list-all --json = %v, want %v", refs, want)
	}
	if v := decode[config.Volume](t, h.ok("", "--json", "volume", "get", "policy1/a")); v.Ref().String() != "policy1/a" {
		t.Errorf("volume get --json = %+v", v)
	}
	decode[config.RuntimeOptions](t, h.ok("", "--json", "volume", "runtime", "get", "policy1/a"))
	decode[config.Global](t, h.ok("", "--json", "global", "get"))
	decode[map[string]any](t, h.ok("", "--json", "volume", "remove", "policy2/b"))
	decode[map[string]any](t, h.ok("", "--json", "policy", "delete", "policy3"))

	// Mount locks, as volplugin would write them.
	ref := config.VolumeRef{Policy: "policy1", Name: "a"}
	h.putUse(config.Use{Volume: ref, Hostname: "host1", MountIDs: []string{"m1", "m2"}})
	h.putUse(config.Use{Volume: config.VolumeRef{Policy: "policy1", Name: "z"}, Hostname: "host2"})
	if got, want := h.ok("", "use", "list"), "policy1/a\thost1\tm1,m2\npolicy1/z\thost2\t-\n"; got != want {
		t.Errorf("use list = %q, want %q", got, want)
	}
	uses := decode[[]config.Use](t, h.ok("", "--json", "use", "list"))
	if len(uses) != 2 || uses[0].Hostname != "host1" {
		t.Errorf("use list --json = %+v", uses)
	}
	if u := decode[config.Use](t, h.ok("", "use", "get", "policy1/a")); u.Hostname != "host1" || u.Volume != ref {
		t.Errorf("use get = %+v", u)
	}
	if out := h.ok("", "use", "force-remove", "policy1/a"); out != "mount lock of volume policy1/a removed (if there was one) and its unmount recorded\n" {
		t.Errorf("force-remove printed %q", out)
	}
	h.fails(3, "mount lock of volume policy1/a not found", "", "use", "get", "policy1/a")
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	r := runVolcli("", "--volmaster", "http://127.0.0.1:1", "--timeout", "2s", "policy", "list")
	checkFail(t, r, 1, "volcli: cannot reach volmaster at http://127.0.0.1:1", nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("unreachable volmaster took %s", d)
	}
	// Also through the environment variable.
	t.Setenv("VOLMASTER", "http://127.0.0.1:1")
	checkFail(t, runVolcli(`{}`, "--timeout", "2s", "global", "upload"), 1, "cannot reach volmaster", nil)
}

func TestHelp(t *testing.T) {
	r := runVolcli("", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "EXIT CODES") || !strings.Contains(r.stdout, "4  conflict") {
		t.Errorf("--help: exit %d, output %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{"volume", "--help"}, {"volume", "create", "--help"}, {"policy", "history", "get", "-h"}, {"use"}} {
		if r := runVolcli("", args...); r.code != 0 || r.stdout == "" || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := runVolcli("", "volume", "create", "--help"); !strings.Contains(r.stdout, "POLICY/NAME") || !strings.Contains(r.stdout, "--opt") {
		t.Errorf("volume create --help = %q", r.stdout)
	}
}

func TestReorderArgs(t *testing.T) {
	app := App(nil, nil, nil)
	for _, c := range []struct{ in, want string }{
		{"volcli", "volcli"},
		{"volcli --json volume list-all", "volcli --json volume list-all"},
		{"volcli volume list-all --json", "volcli --json volume list-all"},
		{"volcli volume create p/n --opt size=1 -o a=b", "volcli volume create --opt size=1 --opt a=b p/n"},
		{"volcli volume create -o=a=b p/n -json", "volcli --json volume create --opt=a=b p/n"},
		{"volcli volume create p/n --opt=size=1", "volcli volume create --opt=size=1 p/n"},
		{"volcli volume remove p/n --force --timeout 1s", "volcli --timeout 1s volume remove --force p/n"},
		{"volcli -json --timeout=1s policy list", "volcli --json --timeout=1s policy list"},
		{"volcli policy upload -- -x", "volcli policy upload -- -x"},
		{"volcli policy upload x --file f", "volcli policy upload --file f x"},
		{"volcli volume get p/n --bogus", "volcli volume get --bogus p/n"},
		{"volcli --bogus volume get p/n", "volcli --bogus volume get p/n"},
		{"volcli volume bogus --json", "volcli volume bogus --json"},
		{"volcli volume create p/n --opt", "volcli volume create --opt"},
		{"volcli volume list-all --timeout", "volcli --timeout"},
		{"volcli volume list-all --timeout --json", "volcli --timeout --json volume list-all"},
	} {
		if got := strings.Join(reorderArgs(app, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("reorder %q = %q, want %q", c.in, got, c.want)
		}
	}
}
