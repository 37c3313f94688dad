package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const grace = time.Minute
	type want struct {
		state                                 MountState
		ready, ephemeral, reclaimable, remove bool
		manualRefused                         bool
		reason                                string // substring of Reason
	}
	reclaimOn := Reclaim{UnusedFor: Duration(time.Hour), Enabled: true}
	reclaimReport := Reclaim{UnusedFor: Duration(time.Hour)}
	for _, c := range []struct {
		name   string
		vol    Volume
		usage  *Usage
		locked bool
		want   want
	}{
		{"locked", Volume{Ephemeral: true, Reclaim: reclaimOn, CreatedAt: ago(48 * time.Hour)},
			&Usage{LastMounted: ago(47 * time.Hour), Host: "h1"}, true,
			want{state: StateMounted, reclaimable: true, manualRefused: true, reason: "mounted"}},
		{"never mounted, reclaimable past the grace", Volume{Reclaim: reclaimOn, CreatedAt: ago(2 * time.Hour)}, nil, false,
			want{state: StateNeverMounted, ready: true, reclaimable: true, remove: true}},
		{"never mounted, reclaim only reported", Volume{Reclaim: reclaimReport, CreatedAt: ago(2 * time.Hour)}, nil, false,
			want{state: StateNeverMounted, ready: true, reclaimable: true}},
		{"never mounted needs no grace", Volume{Reclaim: Reclaim{UnusedFor: Duration(time.Nanosecond), Enabled: true}, CreatedAt: ago(time.Second)}, nil, false,
			want{state: StateNeverMounted, ready: true, reclaimable: true, remove: true}},
		{"reclaimable, unmounted within the grace", Volume{Reclaim: Reclaim{UnusedFor: Duration(time.Nanosecond), Enabled: true}, CreatedAt: ago(time.Hour)},
			&Usage{LastMounted: ago(time.Minute), LastUnmounted: ago(30 * time.Second)}, false,
			want{state: StateUnmounted, reclaimable: true, reason: "waiting for 1m0s without a mount lock since the unmount at 2026-03-01T11:59:30Z"}},
		{"never mounted ephemeral is kept", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)}, nil, false,
			want{state: StateNeverMounted, ready: true}},
		{"usage record without a mount", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)}, &Usage{}, false,
			want{state: StateNeverMounted, ready: true}},
		{"ephemeral unmounted past the grace", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)},
			&Usage{LastMounted: ago(10 * time.Minute), LastUnmounted: ago(2 * time.Minute), Host: "h1"}, false,
			want{state: StateUnmounted, ready: true, ephemeral: true, remove: true}},
		{"ephemeral unmounted exactly one grace ago", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)},
			&Usage{LastMounted: ago(10 * time.Minute), LastUnmounted: ago(grace), Host: "h1"}, false,
			want{state: StateUnmounted, ready: true, ephemeral: true, remove: true}},
		{"ephemeral unmounted within the grace", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)},
			&Usage{LastMounted: ago(10 * time.Minute), LastUnmounted: ago(30 * time.Second), Host: "h1"}, false,
			want{state: StateUnmounted, ephemeral: true, reason: "until 2026-03-01T12:00:30Z"}},
		{"unmount at the same instant as the mount counts", Volume{Ephemeral: true, CreatedAt: ago(time.Hour)},
			&Usage{LastMounted: ago(10 * time.Minute), LastUnmounted: ago(10 * time.Minute)}, false,
			want{state: StateUnmounted, ready: true, ephemeral: true, remove: true}},
		{"ephemeral whose host died", Volume{Ephemeral: true, CreatedAt: ago(48 * time.Hour)},
			&Usage{LastMounted: ago(24 * time.Hour), LastUnmounted: ago(30 * time.Hour), Host: "h1"}, false,
			want{state: StateUnproven, manualRefused: true, reason: `last mounted on host "h1" at 2026-02-28T12:00:00Z`}},
		{"reclaimable whose host died, never unmounted", Volume{Reclaim: reclaimOn, CreatedAt: ago(48 * time.Hour)},
			&Usage{LastMounted: ago(24 * time.Hour), Host: "h2"}, false,
			want{state: StateUnproven, reclaimable: true, manualRefused: true, reason: "volcli use force-remove p/v"}},
		{"reclaim enabled, unused not long enough", Volume{Reclaim: reclaimOn, CreatedAt: ago(48 * time.Hour)},
			&Usage{LastMounted: ago(40 * time.Minute), LastUnmounted: ago(30 * time.Minute)}, false,
			want{state: StateUnmounted, ready: true}},
		{"reclaim enabled, unused long enough", Volume{Reclaim: reclaimOn, CreatedAt: ago(48 * time.Hour)},
			&Usage{LastMounted: ago(3 * time.Hour), LastUnmounted: ago(2 * time.Hour)}, false,
			want{state: StateUnmounted, ready: true, reclaimable: true, remove: true}},
		{"unlocked (stored before the rule) is never collected", Volume{Unlocked: true, Ephemeral: true, Reclaim: reclaimOn, CreatedAt: ago(48 * time.Hour)}, nil, false,
			want{state: StateUnlocked, reclaimable: true, reason: "unlocked"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.vol.Policy, c.vol.Name = "p", "v"
			vd := Decide(&c.vol, c.usage, c.locked, grace, now)
			got := want{state: vd.State, ready: vd.Ready, ephemeral: vd.Ephemeral, reclaimable: vd.Reclaimable, remove: vd.Remove,
				manualRefused: vd.RemoveError(c.vol.Ref()) != nil, reason: c.want.reason}
			if got != c.want {
				t.Errorf("verdict %+v\n got %+v\nwant %+v", vd, got, c.want)
			}
			if !strings.Contains(vd.Reason, c.want.reason) {
				t.Errorf("reason %q, want it to contain %q", vd.Reason, c.want.reason)
			}
			if c.want.reason == "" && vd.Reason != "" {
				t.Errorf("reason %q, want none", vd.Reason)
			}
			if err := vd.RemoveError(c.vol.Ref()); err != nil && !errors.Is(err, ErrInUse) {
				t.Errorf("RemoveError = %v, want ErrInUse", err)
			}
		})
	}
}

// A user's remove is refused with the host and the command that clears it.
func TestRemoveErrorNamesHostAndCommand(t *testing.T) {
	v := Volume{Policy: "db", Name: "pg", CreatedAt: time.Unix(0, 0)}
	vd := Decide(&v, &Usage{LastMounted: time.Unix(100, 0), Host: "node7"}, false, time.Minute, time.Unix(1000, 0))
	err := vd.RemoveError(v.Ref())
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), `host "node7"`) ||
		!strings.Contains(err.Error(), "volcli use force-remove db/pg") {
		t.Errorf("RemoveError = %v", err)
	}
}

// The usage record orders a mount after any recorded unmount and an unmount
// after its mount, whatever the writers' clocks say.
func TestUsageOrdering(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var u Usage
	u.Mounted("a", t0)
	u.Unmounted("a", t0.Add(time.Minute))
	if u.Unrecorded() {
		t.Fatalf("after unmount: %+v", u)
	}
	// A volmaster whose clock is behind records the next mount.
	u.Mounted("b", t0.Add(30*time.Second))
	if !u.Unrecorded() || u.Host != "b" || !u.LastMounted.After(u.LastUnmounted) {
		t.Fatalf("a mount stamped before the last unmount reads as unmounted: %+v", u)
	}
	// And one whose clock is behind records its unmount.
	u.Unmounted("", t0)
	if u.Unrecorded() || u.Host != "b" {
		t.Fatalf("an unmount stamped before its mount is not recorded: %+v", u)
	}
}

func TestFindReclaimable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-48 * time.Hour)
	on := Reclaim{UnusedFor: Duration(time.Hour), Enabled: true}
	vols := []Volume{
		{Policy: "p", Name: "gone", CreatedAt: old, Reclaim: on},
		{Policy: "p", Name: "locked", CreatedAt: old, Reclaim: on},
		{Policy: "p", Name: "dead-host", CreatedAt: old, Reclaim: on},
		{Policy: "p", Name: "eph-dead-host", CreatedAt: old, Ephemeral: true},
		{Policy: "p", Name: "eph-fine", CreatedAt: old, Ephemeral: true},
		{Policy: "p", Name: "recent", CreatedAt: now.Add(-time.Minute), Reclaim: on},
		{Policy: "p", Name: "report", CreatedAt: old, Reclaim: Reclaim{UnusedFor: Duration(time.Hour)}},
	}
	ref := func(n string) VolumeRef { return VolumeRef{Policy: "p", Name: n} }
	usage := map[VolumeRef]Usage{
		ref("dead-host"):     {LastMounted: now.Add(-3 * time.Hour), Host: "h1"},
		ref("eph-dead-host"): {LastMounted: now.Add(-time.Minute), Host: "h2"},
		ref("eph-fine"):      {LastMounted: now.Add(-time.Hour), LastUnmounted: now.Add(-time.Minute)},
	}
	got := FindReclaimable(vols, usage, map[VolumeRef]bool{ref("locked"): true}, time.Minute, now)
	var names []string
	for _, r := range got {
		names = append(names, r.Volume.Name)
	}
	if strings.Join(names, ",") != "gone,dead-host,eph-dead-host,report" {
		t.Fatalf("listed %v", names)
	}
	if r := got[0]; !r.Ready || !r.WillRemove || r.State != StateNeverMounted || r.Reason != "" {
		t.Errorf("gone: %+v", r)
	}
	if r := got[1]; r.Ready || r.WillRemove || r.State != StateUnproven || r.Host != "h1" || !strings.Contains(r.Reason, "force-remove p/dead-host") {
		t.Errorf("dead-host: %+v", r)
	}
	if r := got[2]; r.Ready || r.WillRemove || !r.Ephemeral || r.State != StateUnproven || r.Host != "h2" {
		t.Errorf("eph-dead-host: %+v", r)
	}
	if r := got[3]; !r.Ready || r.WillRemove {
		t.Errorf("report: %+v", r)
	}
}
