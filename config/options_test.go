package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// originalDocumented is every volume option the original volplugin's docs
// listed for docker volume create --opt (its README's driver options and its
// NFS section), with its merge tags: mount and unlocked.
var originalDocumented = []string{
	"size", "snapshots", "snapshots.frequency", "snapshots.keep", "filesystem",
	"rate-limit.write.iops", "rate-limit.read.iops", "rate-limit.read.bps", "rate-limit.write.bps",
	"mount", "unlocked",
}

func originalPolicy(t *testing.T, file string) Policy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(originals, file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePolicy("p", b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Each spelling of the original creates the same volume as ours does, and
// a different one from the policy alone (so the option is not ignored).
func TestOriginalOptionSpellings(t *testing.T) {
	ceph := originalPolicy(t, "ceph/fs.json")
	nfs := originalPolicy(t, "nfs/policy1.json")
	rows := []struct {
		orig, ours, val string
		p               Policy
		with            map[string]string // other options both creates get
	}{
		{"size", OptSize, "20MB", ceph, nil},
		{"filesystem", OptFilesystem, "ext4", ceph, nil},
		{"snapshots", OptSnapshots, "false", ceph, nil},
		{"snapshots.frequency", OptSnapshotFrequency, "1h", ceph, nil},
		{"snapshots.keep", OptSnapshotKeep, "3", ceph, nil},
		{"rate-limit.write.bps", OptWriteBPS, "1000000", ceph, nil},
		{"rate-limit.read.bps", OptReadBPS, "120000", ceph, nil},
		{"rate-limit.write.iops", OptWriteIOPS, "110000", ceph, nil},
		{"rate-limit.read.iops", OptReadIOPS, "130000", ceph, nil},
		{"mount", OptSource, "127.0.0.1:/mynfsmount", nfs, nil},
		{"unlocked", OptUnlocked, "true", nfs, map[string]string{"mount": "filer:/x"}},
	}
	var seen []string
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ref := VolumeRef{Policy: "p", Name: "v"}
	for _, r := range rows {
		seen = append(seen, r.orig)
		t.Run(r.orig, func(t *testing.T) {
			opts := func(k string) map[string]string {
				o := maps.Clone(r.with)
				if o == nil {
					o = map[string]string{}
				}
				if k != "" {
					o[k] = r.val
				}
				return o
			}
			theirs, err := NewVolume(ref, r.p, 1, opts(r.orig), now)
			if err != nil {
				t.Fatalf("-o %s=%s: %v", r.orig, r.val, err)
			}
			ours, err := NewVolume(ref, r.p, 1, opts(r.ours), now)
			if err != nil {
				t.Fatalf("-o %s=%s: %v", r.ours, r.val, err)
			}
			if !reflect.DeepEqual(theirs, ours) {
				t.Errorf("-o %s=%s made\n%+v\n-o %s=%s made\n%+v", r.orig, r.val, theirs, r.ours, r.val, ours)
			}
			plain, err := NewVolume(ref, r.p, 1, opts(""), now)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(plain, ours) {
				t.Errorf("-o %s=%s changed nothing", r.ours, r.val)
			}
		})
	}
	slices.Sort(seen)
	want := slices.Sorted(slices.Values(originalDocumented))
	if !slices.Equal(seen, want) {
		t.Errorf("table covers %v, the original documented %v", seen, want)
	}
	for alias, ours := range OptionAliases() {
		if !slices.Contains(originalDocumented, alias) {
			t.Errorf("alias %s (of %s) is not one the original documented", alias, ours)
		}
		if !slices.Contains(VolumeOptions(), ours) {
			t.Errorf("alias %s names %s, not a volume option", alias, ours)
		}
	}
}

func TestOptionSpellingsRefused(t *testing.T) {
	ceph := originalPolicy(t, "ceph/fs.json")
	nfs := originalPolicy(t, "nfs/policy1.json")
	ref := VolumeRef{Policy: "p", Name: "v"}
	for _, c := range []struct {
		p    Policy
		opts map[string]string
	}{
		{ceph, map[string]string{"snapshots.keep": "3", "snapshot.keep": "4"}}, // both spellings
		{ceph, map[string]string{"mount": "filer:/x"}},                         // a Ceph volume has no export
		{ceph, map[string]string{"unlocked": "true"}},                          // unlocked only on nfs
		{nfs, map[string]string{"mount": "filer"}},
		{nfs, map[string]string{"source": "-o:/x"}},
		{nfs, map[string]string{"mount": "filer:/a b"}},
		{ceph, map[string]string{"rate-limit.write.bps": "fast"}},
		{ceph, map[string]string{"snapshots.frequency": "often"}},
	} {
		if _, err := NewVolume(ref, c.p, 1, c.opts, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("options %v: %v, want ErrInvalid", c.opts, err)
		}
	}
}
