package config

import (
	"fmt"
	"strings"
	"time"
)

// SnapshotTimeFormat names snapshots by their UTC time, so names sort in time
// order and parse back into times.
const SnapshotTimeFormat = "20060102T150405.000Z"

// SnapshotName returns the name of a snapshot taken at t.
func SnapshotName(t time.Time) string { return t.UTC().Format(SnapshotTimeFormat) }

// ParseSnapshotName returns the time a snapshot name stands for.
func ParseSnapshotName(name string) (time.Time, error) {
	t, err := time.Parse(SnapshotTimeFormat, name)
	if err != nil {
		return time.Time{}, fmt.Errorf("snapshot name %q is not a UTC timestamp like 20260102T150405.000Z: %w", name, ErrInvalid)
	}
	return t, nil
}

// originalSnapshotLayout is time.Time.String()'s layout: the original
// volplugin named each snapshot by the time it took it that way.
const originalSnapshotLayout = "2006-01-02 15:04:05.999999999 -0700 MST"

// ParseOriginalSnapshotName returns the time an original volplugin's
// snapshot name stands for ("2017-06-01 10:00:00.123456789 +0000 UTC",
// perhaps with Go's monotonic clock reading, " m=+1.5", after it).
func ParseOriginalSnapshotName(name string) (time.Time, error) {
	s, _, _ := strings.Cut(name, " m=")
	t, err := time.Parse(originalSnapshotLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("snapshot name %q is not a time as the original volplugin wrote it: %w", name, ErrInvalid)
	}
	return t.UTC(), nil
}

// Snapshot records one snapshot of a volume.
type Snapshot struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	// By says who took it: "volsupervisor@host" (scheduled) or the
	// volmaster that served an on-demand request.
	By string `json:"by"`
	// Method says how the backend took it: native (Ceph), reflink (a
	// copy-on-write clone of a local image) or copy (a copy of its data).
	Method string `json:"method,omitempty"`
	// FrozenMS is how long, in milliseconds, the filesystem of a volume
	// mounted on the snapshotting host was frozen for it (writers held);
	// absent if it was not frozen.
	FrozenMS int64 `json:"frozen-ms,omitempty"`
	// Backend is the backend's name for the snapshot when it is not Name:
	// an RBD snapshot the original volplugin took keeps its name (its
	// time.String(), spaces and all) and is listed under a name of ours made
	// from its time (volcli migrate from-contiv).
	Backend string `json:"backend-name,omitempty"`
	// Label is the name a caller gave an on-demand snapshot (volcsi: the
	// CSI snapshot's name), unique among the volume's snapshots: taking a
	// snapshot with a label the volume has returns that one. A labelled
	// snapshot is its caller's: never pruned, kept until removed (DELETE
	// .../snapshots/{snap}).
	Label string `json:"label,omitempty"`
}

// BackendName is the name the backend knows the snapshot by.
func (s Snapshot) BackendName() string {
	if s.Backend != "" {
		return s.Backend
	}
	return s.Name
}

// Retain returns the names of the snapshots to keep: every labelled one,
// and of the others the newest keep, plus the tiers' picks. snaps must be
// sorted oldest first (as their names sort). With keep 0 and no tiers
// everything is kept.
func Retain(snaps []Snapshot, keep uint, tiers Tiers) map[string]bool {
	out := make(map[string]bool, len(snaps))
	var scheduled []Snapshot
	for _, s := range snaps {
		if s.Label != "" {
			out[s.Name] = true
		} else {
			scheduled = append(scheduled, s)
		}
	}
	snaps = scheduled
	if keep == 0 && tiers == (Tiers{}) {
		for _, s := range snaps {
			out[s.Name] = true
		}
		return out
	}
	for i := len(snaps) - 1; i >= 0 && uint(len(snaps)-i) <= keep; i-- {
		out[snaps[i].Name] = true
	}
	pick := func(n uint, bucket func(time.Time) string) {
		seen := map[string]bool{}
		for i := len(snaps) - 1; i >= 0 && uint(len(seen)) < n; i-- {
			b := bucket(snaps[i].Time.UTC())
			if !seen[b] {
				seen[b] = true
				out[snaps[i].Name] = true
			}
		}
	}
	pick(tiers.Hourly, func(t time.Time) string { return t.Format("2006010215") })
	pick(tiers.Daily, func(t time.Time) string { return t.Format("20060102") })
	pick(tiers.Weekly, func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%d-%02d", y, w)
	})
	return out
}

// SupervisorStatus is what a volsupervisor reports about itself.
type SupervisorStatus struct {
	Name    string `json:"name"`
	Leading bool   `json:"leading"`
	// LastRun is when the leader last finished a round. The record in etcd
	// is rewritten only when something else in it changes or, while only
	// LastRun moves, every StatusRefresh: there it is at most StatusRefresh
	// (plus one round) old. volsupervisor's own /info has it live.
	LastRun   time.Time `json:"last-run,omitzero"`
	LastError string    `json:"last-error,omitempty"`
	Taken     int       `json:"snapshots-taken"`
	Pruned    int       `json:"snapshots-pruned"`
	Removed   int       `json:"volumes-removed"`
	// Purged counts trash entries purged after their retention.
	Purged int `json:"trash-purged"`
	// NextDue lists the soonest scheduled snapshots (leader only).
	NextDue []DueSnapshot `json:"next-due,omitempty"`
	// Unproven lists the volumes the leader would remove (ephemeral, or
	// reclaimable with reclaim.enabled) but keeps because their last mount
	// has no recorded unmount: each needs an operator (volcli use
	// force-remove once its host no longer has it mounted).
	Unproven []Unproven `json:"in-use-until-proven-unmounted,omitempty"`
	// StatusRefresh is how often the record is rewritten when only LastRun
	// changed.
	StatusRefresh Duration `json:"status-refresh,omitzero"`
}

// DueSnapshot is a scheduled snapshot not yet taken.
type DueSnapshot struct {
	Volume VolumeRef `json:"volume"`
	At     time.Time `json:"at"`
}
