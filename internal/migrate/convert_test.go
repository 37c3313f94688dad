package migrate

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

const (
	cephPolicy = `{"name":"p","create":{"size":"10MB","filesystem":"ext4"},"runtime":{"snapshots":false,"snapshot":{"frequency":"","keep":0},"rate-limit":{"write-bps":0,"read-bps":0}},"driver":{"pool":"rbd"},"filesystems":{"ext4":"mkfs.ext4 -m0 %"},"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"}}`
	cephVolume = `{"policy":"p","name":"v","driver":{"pool":"rbd"},"mount":"","create":{"size":"10MB","filesystem":"ext4"},"runtime":{"snapshots":false,"snapshot":{"frequency":"","keep":0},"rate-limit":{"write-bps":0,"read-bps":0}},"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"}}`
)

func hasNote(p *Plan, record, field, why string) bool {
	return slices.ContainsFunc(p.Notes, func(n Note) bool {
		return n.Record == record && n.Field == field && strings.Contains(n.Why, why)
	})
}

func TestReadDump(t *testing.T) {
	f, err := os.Open("testdata/original-etcd/contiv-etcd-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tree, err := ReadDump(f, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"global-config", "policies/p", "policy-archives/p/1796284818", "volumes/p/pgdata/runtime"} {
		if _, ok := tree[k]; !ok {
			t.Errorf("dump lacks %s: %v", k, tree.Keys())
		}
	}
	for _, bad := range []string{"", "{}", "[1]", `{"node":{"key":"/other","dir":true}}`} {
		if _, err := ReadDump(strings.NewReader(bad), "/volplugin"); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("ReadDump(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := ReadDump(strings.NewReader(`{"node":{"key":"/volplugin","dir":true}}`), "volplugin/"); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("a bad prefix: %v", err)
	}
}

// Sizes mean what the original made of them: decimal units, whole MB, an
// image of that many MiB.
func TestSizes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"10MB", "10MB"}, {"2GB", "2000MiB"}, {"1GiB", "1000MiB"}, {"100MB", "100MB"}, {"1500kB", "1MiB"},
	} {
		vol := strings.Replace(cephVolume, `"size":"10MB"`, `"size":"`+c.in+`"`, 1)
		p := Convert(Tree{"volumes/p/v/create": vol}, now)
		if len(p.Problems) > 0 || len(p.Volumes) != 1 || p.Volumes[0].Create.Size != c.want {
			t.Errorf("size %s: %+v %v, want %s", c.in, p.Volumes, p.Problems, c.want)
			continue
		}
		if changed := c.in != c.want; changed != hasNote(p, "volume p/v", "create.size", "the original made") {
			t.Errorf("size %s: notes %v", c.in, p.Notes)
		}
	}
	for _, bad := range []string{"", "0", "1kB", "big"} {
		vol := strings.Replace(cephVolume, `"size":"10MB"`, `"size":"`+bad+`"`, 1)
		if p := Convert(Tree{"volumes/p/v/create": vol}, now); len(p.Problems) == 0 {
			t.Errorf("size %q: no problem reported: %+v", bad, p.Volumes)
		}
	}
}

func TestGlobalDurations(t *testing.T) {
	p := Convert(Tree{"global-config": `{"Debug":false,"Timeout":90000000000,"TTL":1500000000,"MountPath":"/mnt/x","Extra":1}`}, now)
	want := config.Global{TTL: 2, Timeout: 2, MountPath: "/mnt/x"}
	if p.Global == nil || *p.Global != want {
		t.Fatalf("global %+v, want %+v (%v)", p.Global, want, p.Problems)
	}
	for _, f := range []string{"TTL", "Timeout", "Extra"} {
		if !hasNote(p, "global config", f, "") {
			t.Errorf("no note on %s: %v", f, p.Notes)
		}
	}
	p = Convert(Tree{"global-config": `{}`}, now)
	if p.Global == nil || *p.Global != config.DefaultGlobal() {
		t.Errorf("empty global %+v", p.Global)
	}
	if p = Convert(Tree{"global-config": `{"MountPath":"relative"}`}, now); len(p.Problems) != 1 {
		t.Errorf("bad MountPath: %v", p.Problems)
	}
}

// What this suite refuses is dropped with a note where the original's
// meaning survives, and refused (nothing imported) where it does not.
func TestPolicyRules(t *testing.T) {
	unlocked := strings.Replace(cephPolicy, `"name":"p",`, `"name":"p","unlocked":true,`, 1)
	p := Convert(Tree{"policies/p": unlocked}, now)
	if len(p.Policies) != 1 || p.Policies[0].Import.Revisions[0].Policy.Unlocked || !hasNote(p, "policy p", "unlocked", "corrupt") {
		t.Errorf("unlocked ceph policy: %+v %v", p.Policies, p.Notes)
	}
	keep0 := strings.Replace(cephPolicy, `"snapshots":false,"snapshot":{"frequency":"","keep":0}`, `"snapshots":true,"snapshot":{"frequency":"1m","keep":0}`, 1)
	p = Convert(Tree{"policies/p": keep0}, now)
	if len(p.Policies) != 1 || p.Policies[0].Import.Revisions[0].Policy.Runtime.Snapshots || !hasNote(p, "policy p", "runtime.snapshots", "keep 0") {
		t.Errorf("snapshots with keep 0: %+v %v", p.Policies, p.Notes)
	}
	shell := strings.Replace(cephPolicy, `"filesystems":{"ext4":"mkfs.ext4 -m0 %"}`, `"filesystems":{"ext4":"mkfs.ext4 -m0 %","evil":"rm -rf /"}`, 1)
	p = Convert(Tree{"policies/p": shell}, now)
	if len(p.Problems) > 0 || !hasNote(p, "policy p", "filesystems.evil", "dropped") {
		t.Errorf("a refused filesystem not in use: %v %v", p.Problems, p.Notes)
	}
	inUse := strings.Replace(shell, `"filesystem":"ext4"`, `"filesystem":"evil"`, 1)
	if p = Convert(Tree{"policies/p": inUse}, now); len(p.Problems) != 1 || len(p.Policies) != 0 {
		t.Errorf("a refused filesystem in use: %v %+v", p.Problems, p.Policies)
	}
	extra := strings.Replace(cephPolicy, `"driver":{"pool":"rbd"}`, `"driver":{"pool":"fast","user":"x"}`, 1)
	p = Convert(Tree{"policies/p": extra}, now)
	if len(p.Policies) != 1 || p.Policies[0].Import.Revisions[0].Policy.Driver.Pool != "fast" || !hasNote(p, "policy p", "driver.user", "did not read") {
		t.Errorf("driver options: %+v %v", p.Policies, p.Notes)
	}
}

func TestPolicyHistory(t *testing.T) {
	newer := strings.Replace(cephPolicy, `"size":"10MB"`, `"size":"20MB"`, 1)
	// Archives only: deleted in the original.
	p := Convert(Tree{"policy-archives/p/100": cephPolicy, "policy-archives/p/20": newer}, now)
	if len(p.Policies) != 1 {
		t.Fatalf("policies %+v %v", p.Policies, p.Problems)
	}
	in := p.Policies[0].Import
	if !in.Deleted || len(in.Revisions) != 2 || !in.Revisions[0].Time.Equal(time.Unix(20, 0)) || in.Revisions[1].Policy.Create.Size != "10MB" {
		t.Errorf("deleted policy: %+v", in)
	}
	// A current version that was never archived: a revision at the import's time.
	p = Convert(Tree{"policy-archives/p/100": cephPolicy, "policies/p": newer}, now)
	in = p.Policies[0].Import
	if in.Deleted || len(in.Revisions) != 2 || !in.Revisions[1].Time.Equal(now) || !hasNote(p, "policy p", "revision time", "") {
		t.Errorf("unarchived current version: %+v %v", in, p.Notes)
	}
	// The current version as the last archive: no extra revision.
	p = Convert(Tree{"policy-archives/p/100": cephPolicy, "policies/p": cephPolicy}, now)
	if in = p.Policies[0].Import; len(in.Revisions) != 1 {
		t.Errorf("archived current version: %+v", in)
	}
	if p = Convert(Tree{"policies/bad name": cephPolicy}, now); len(p.Problems) != 1 {
		t.Errorf("bad policy name: %v", p.Problems)
	}
}

func TestVolumeRules(t *testing.T) {
	nfs := `{"policy":"n","name":"v","driver":{},"mount":"127.0.0.1:/mynfsmount","create":{"size":"","filesystem":"ext4"},"runtime":{},"backends":{"crud":"","mount":"nfs","snapshot":""},"unlocked":true}`
	p := Convert(Tree{"volumes/n/v/create": nfs}, now)
	if len(p.Volumes) != 1 {
		t.Fatalf("nfs volume: %v", p.Problems)
	}
	v := p.Volumes[0]
	if v.Driver.Options[config.DriverSource] != "127.0.0.1:/mynfsmount" || !v.Unlocked || v.Image != "" || v.Formatted() || v.Create != (config.CreateOptions{}) {
		t.Errorf("nfs volume %+v", v)
	}
	if !hasNote(p, "volume n/v", "create", "makes and formats nothing") {
		t.Errorf("notes %v", p.Notes)
	}
	mounted := strings.Replace(cephVolume, `"mount":""`, `"mount":"x:/y"`, 1)
	p = Convert(Tree{"volumes/p/v/create": mounted}, now)
	if len(p.Volumes) != 1 || p.Volumes[0].Image != "p.v" || !p.Volumes[0].Formatted() || !hasNote(p, "volume p/v", "mount", "only an nfs") {
		t.Errorf("ceph volume with a mount: %+v %v", p.Volumes, p.Notes)
	}
	if !hasNote(p, "volume p/v", "filesystems", "not imported") || !hasNote(p, "volume p/v", "runtime", "no runtime record") {
		t.Errorf("notes %v", p.Notes)
	}
	for _, tree := range []Tree{
		{"volumes/p/v/runtime": `{}`},             // runtime without record
		{"volumes/p/v/create": `{"policy":"p"}`},  // no backends
		{"volumes/p/v/create": `not json`},        // garbage
		{"volumes/p/bad name/create": cephVolume}, // bad name
	} {
		if p := Convert(tree, now); len(p.Problems) != 1 || len(p.Volumes) != 0 {
			t.Errorf("%v: problems %v, volumes %+v", tree.Keys(), p.Problems, p.Volumes)
		}
	}
}

// Locks and problems refuse the import before volmaster is asked anything
// (the importer is nil: calling it would panic).
func TestApplyRefuses(t *testing.T) {
	tree := Tree{
		"policies/p":             cephPolicy,
		"users/mount/p/v":        `{"Volume":{},"Hostname":"node1","Reason":"Mount"}`,
		"snapshots/p/v":          "",
		"weird/key":              "x",
		"volumes/p/v/create":     cephVolume,
		"users/snapshot/p/other": `{"Reason":"Snapshot"}`,
	}
	p := Convert(tree, now)
	if len(p.Locks) != 2 || p.Locks[0].Host != "node1" || p.Locks[0].Kind != "mount" || p.Locks[1].Kind != "snapshot" {
		t.Fatalf("locks %+v", p.Locks)
	}
	if !hasNote(p, "snapshot request p/v", "snapshots/p/v", "not taken yet") || !hasNote(p, "key weird/key", "weird/key", "not part") {
		t.Errorf("notes %v", p.Notes)
	}
	_, err := Apply(context.Background(), p, nil, Options{})
	if !errors.Is(err, ErrLocked) || !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "users/mount/p/v (host node1)") {
		t.Errorf("Apply with locks: %v", err)
	}
	p.Problems = []string{"volume x/y: broken"}
	if _, err := Apply(context.Background(), p, nil, Options{IgnoreLocks: true}); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "x/y") {
		t.Errorf("Apply with problems: %v", err)
	}
}
