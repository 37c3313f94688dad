package config

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSnapshotNamesSortAndParse(t *testing.T) {
	a := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	b := a.Add(time.Millisecond)
	if SnapshotName(a) >= SnapshotName(b) {
		t.Errorf("%s does not sort before %s", SnapshotName(a), SnapshotName(b))
	}
	got, err := ParseSnapshotName(SnapshotName(a))
	if err != nil || !got.Equal(a.Truncate(time.Millisecond)) {
		t.Errorf("ParseSnapshotName = %v, %v", got, err)
	}
	if err := ValidateName("snapshot", SnapshotName(a)); err != nil {
		t.Errorf("snapshot name is not a valid name: %v", err)
	}
	if _, err := ParseSnapshotName("yesterday"); err == nil {
		t.Error("parsed a bad name")
	}
}

func TestRetainTiers(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // a Sunday
	var snaps []Snapshot
	// One snapshot every 30 minutes for 20 days.
	for i := range 20 * 48 {
		tm := base.Add(time.Duration(i) * 30 * time.Minute)
		snaps = append(snaps, Snapshot{Name: SnapshotName(tm), Time: tm})
	}
	kept := Retain(snaps, 3, Tiers{Hourly: 24, Daily: 7, Weekly: 4})
	at := func(day, hour, min int) string {
		return SnapshotName(time.Date(2026, 3, day, hour, min, 0, 0, time.UTC))
	}
	// Newest 3 (Mar 20 22:30, 23:00, 23:30); the last of each of the 24
	// hours of Mar 20 (XX:30, adding 23 to 23:30 and 23:00); the last of
	// Mar 14..19 (6 more); the last of ISO weeks 10 and 9 (Mar 8, Mar 1;
	// weeks 12 and 11 are already covered by Mar 20 and Mar 15).
	want := []string{at(20, 23, 0), at(8, 23, 30), at(1, 23, 30)}
	for h := range 24 {
		want = append(want, at(20, h, 30))
	}
	for d := 14; d <= 19; d++ {
		want = append(want, at(d, 23, 30))
	}
	var got []string
	for _, s := range snaps {
		if kept[s.Name] {
			got = append(got, s.Name)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kept %d:\n%v\nwant %d:\n%v", len(got), got, len(want), want)
	}
	if got := Retain(snaps, 0, Tiers{}); len(got) != len(snaps) {
		t.Errorf("keep 0 without tiers kept %d of %d", len(got), len(snaps))
	}
	if got := Retain(snaps, 5, Tiers{}); len(got) != 5 || !got[snaps[len(snaps)-1].Name] || !got[snaps[len(snaps)-5].Name] {
		t.Errorf("keep 5 kept %v", got)
	}
}

func TestParseOriginalSnapshotName(t *testing.T) {
	want := time.Date(2017, 6, 1, 10, 0, 0, 123456789, time.UTC)
	for _, name := range []string{
		"2017-06-01 10:00:00.123456789 +0000 UTC",
		"2017-06-01 12:00:00.123456789 +0200 CEST",
		"2017-06-01 10:00:00.123456789 +0000 UTC m=+12.345678901",
	} {
		if got, err := ParseOriginalSnapshotName(name); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "20170601T100000.123Z", "before-upgrade"} {
		if _, err := ParseOriginalSnapshotName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestRetainKeepsLabelled: a labelled snapshot is its caller's, never
// pruned, and does not take one of keep's places.
func TestRetainKeepsLabelled(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var snaps []Snapshot
	for i := range 5 {
		tm := base.Add(time.Duration(i) * time.Hour)
		s := Snapshot{Name: SnapshotName(tm), Time: tm}
		if i == 0 || i == 4 {
			s.Label = "csi-" + SnapshotName(tm)
		}
		snaps = append(snaps, s)
	}
	kept := Retain(snaps, 1, Tiers{})
	for i, want := range []bool{true, false, false, true, true} {
		if kept[snaps[i].Name] != want {
			t.Errorf("snapshot %d (label %q): kept %v, want %v", i, snaps[i].Label, kept[snaps[i].Name], want)
		}
	}
}
