package config

import (
	"fmt"
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

// Snapshot records one snapshot of a volume.
type Snapshot struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	// By says who took it: "volsupervisor@host" (scheduled) or the
	// volmaster that served an on-demand request.
	By string `json:"by"`
}
