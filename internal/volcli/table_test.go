package volcli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files with the tables printed now")

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -run %s -update rewrites it):\n--- got\n%s--- want\n%s", name, p, t.Name(), got, want)
	}
}

// Fixed data for the tables: what volmaster answers, as of fixtureNow.
var (
	fixtureNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	t0         = time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC)
)

func fixtureVolumes() []config.Volume {
	local := config.Backends{CRUD: "local", Mount: "local", Snapshot: "local"}
	ceph := config.Backends{CRUD: "ceph", Mount: "ceph", Snapshot: "ceph"}
	return []config.Volume{
		{Policy: "db", Name: "orders", CreatedAt: t0, Backends: ceph, Driver: config.Driver{Pool: "rbd"},
			Create: config.CreateOptions{Size: "10GiB", Filesystem: "xfs"}, Protect: true,
			Runtime: config.RuntimeOptions{Snapshots: true, Snapshot: config.SnapshotConfig{Frequency: config.Duration(time.Hour), Keep: 24,
				Tiers: config.Tiers{Daily: 7}}, RateLimit: config.RateLimit{WriteBPS: 10 << 20, ReadIOPS: 500}}},
		{Policy: "db", Name: "scratch-with-a-long-name", CreatedAt: t0.Add(time.Hour), Backends: local,
			Create: config.CreateOptions{Size: "100MB", Filesystem: "ext4"}, Ephemeral: true},
		{Policy: "web", Name: "static", CreatedAt: t0.Add(2 * time.Hour), Backends: config.Backends{Mount: "nfs"}, Unlocked: true},
	}
}

func fixtureUses() []config.Use {
	return []config.Use{
		{Volume: config.VolumeRef{Policy: "db", Name: "orders"}, Hostname: "docker-host-3", Holder: "volplugin.1a2b3c4d", Lease: 7587891234567890, MountIDs: []string{"a1b2", "c3d4"}, Since: t0.Add(30 * time.Minute)},
		{Volume: config.VolumeRef{Policy: "web", Name: "static"}, Hostname: "web1", MountIDs: []string{"e5f6"}, Since: t0.Add(3 * time.Hour)},
	}
}

func fixturePolicies() []config.Policy {
	vols := fixtureVolumes()
	return []config.Policy{
		{Name: "db", Backends: vols[0].Backends, Driver: vols[0].Driver, Create: vols[0].Create, Runtime: vols[0].Runtime, Protect: true,
			Reclaim: config.Reclaim{UnusedFor: config.Duration(30 * 24 * time.Hour)}},
		{Name: "tmp", Backends: vols[1].Backends, Create: vols[1].Create, Ephemeral: true,
			Reclaim: config.Reclaim{UnusedFor: config.Duration(24 * time.Hour), Enabled: true}},
		{Name: "web", Backends: vols[2].Backends, Unlocked: true},
	}
}

func fixtureSnapshots() []config.Snapshot {
	return []config.Snapshot{
		{Name: "20261123T100000.000Z", Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), By: "volsupervisor sup1", Method: "native"},
		{Name: "20261123T110000.000Z", Time: time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC), By: "volmaster vm1", Method: "native", FrozenMS: 12},
	}
}

func fixtureSupervisors() []config.SupervisorStatus {
	return []config.SupervisorStatus{
		{Name: "sup1", Leading: true, LastRun: fixtureNow.Add(-time.Minute), Taken: 120, Pruned: 96, Removed: 2, Purged: 1,
			StatusRefresh: config.Duration(5 * time.Minute),
			NextDue:       []config.DueSnapshot{{Volume: config.VolumeRef{Policy: "db", Name: "orders"}, At: fixtureNow.Add(time.Hour)}},
			Unproven: []config.Unproven{{Volume: config.VolumeRef{Policy: "tmp", Name: "x"}, Host: "gone-host",
				LastMounted: t0}}},
		{Name: "sup2", LastError: "snapshot db/orders:\tbackend\nunavailable"},
	}
}

func fixtureTokens() []config.Token {
	return []config.Token{
		{ID: "adm1", Role: config.RoleAdmin, Created: t0, Description: "ops team"},
		{ID: "ten1", Role: config.RoleTenant, Policies: []string{"db", "web"}, Created: t0, Expires: fixtureNow.Add(24 * time.Hour)},
		{ID: "hst1", Role: config.RoleHost, Host: "docker-host-3", Created: t0, Expires: fixtureNow.Add(-time.Hour),
			Description: "old \x1b[31mred\x1b[0m host"},
	}
}

// TestTablesGolden renders every list command's table and wide table from
// fixed data and compares them with testdata/<command>.<mode>.golden.
func TestTablesGolden(t *testing.T) {
	cases := map[string]func(mode string) string{
		"volume-list-all": func(m string) string {
			return renderString(volumeListing(fixtureVolumes(), fixtureUses(), true), m)
		},
		"volume-list": func(m string) string {
			return renderString(volumeListing(fixtureVolumes()[:2], fixtureUses(), false), m)
		},
		"use-list":          func(m string) string { return renderString(useListing(fixtureUses()), m) },
		"snapshot-list":     func(m string) string { return renderString(snapshotListing(fixtureSnapshots()), m) },
		"policy-list":       func(m string) string { return renderString(policyListing(fixturePolicies()), m) },
		"supervisor-status": func(m string) string { return renderString(supervisorListing(fixtureSupervisors()), m) },
		"token-list":        func(m string) string { return renderString(tokenListing(fixtureTokens(), fixtureNow), m) },
	}
	for name, show := range cases {
		for _, mode := range []string{outTable, outWide} {
			t.Run(name+"."+mode, func(t *testing.T) {
				got := show(mode)
				golden(t, name+"."+mode, got)
				checkAligned(t, got)
			})
		}
	}
}

func renderString[T any](l listing[T], mode string) string {
	var b bytes.Buffer
	l.render(&b, mode)
	return b.String()
}

// checkAligned checks what makes a table readable whatever the data: a
// header in capitals, every column starting at the same offset on every
// line, and no control characters.
func checkAligned(t *testing.T, table string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	header := lines[0]
	if header != strings.ToUpper(header) {
		t.Errorf("header %q is not in capitals", header)
	}
	// Column starts: after two or more spaces in the header.
	var starts []int
	for i := 1; i < len(header); i++ {
		if header[i] != ' ' && strings.HasSuffix(header[:i], "  ") {
			starts = append(starts, i)
		}
	}
	for _, l := range lines[1:] {
		for _, r := range l {
			if r < ' ' || r == 0x7f {
				t.Errorf("line %q has control character %q", l, r)
			}
		}
		for _, s := range starts {
			if len(l) <= s || l[s] == ' ' || l[s-1] != ' ' {
				t.Errorf("line %q: no cell starts at column %d, as in header %q", l, s, header)
			}
		}
	}
}
