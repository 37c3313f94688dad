package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// RuntimeOptions may change while a volume is mounted; every volume has its
// own record, seeded from its policy at creation.
type RuntimeOptions struct {
	Snapshots bool           `json:"snapshots"`
	Snapshot  SnapshotConfig `json:"snapshot,omitzero"`
	RateLimit RateLimit      `json:"rate-limit,omitzero"`
}

// SnapshotConfig sets how often snapshots are taken and how many are kept.
type SnapshotConfig struct {
	Frequency Duration `json:"frequency,omitzero"`
	Keep      uint     `json:"keep,omitzero"`
	// Tiers keeps older snapshots beyond Keep at coarser intervals.
	Tiers Tiers `json:"tiers,omitzero"`
}

// Tiers is grandfather-father-son retention: besides the newest Keep
// snapshots, keep the newest snapshot of each of the last Hourly hours,
// Daily days and Weekly weeks (UTC) that have one.
type Tiers struct {
	Hourly uint `json:"hourly,omitzero"`
	Daily  uint `json:"daily,omitzero"`
	Weekly uint `json:"weekly,omitzero"`
}

// RateLimit caps I/O on the volume's device; zero means unlimited.
type RateLimit struct {
	ReadBPS   ByteRate `json:"read-bps,omitzero"`
	WriteBPS  ByteRate `json:"write-bps,omitzero"`
	ReadIOPS  uint64   `json:"read-iops,omitzero"`
	WriteIOPS uint64   `json:"write-iops,omitzero"`
}

// ByteRate is bytes per second; JSON accepts a number or a size string
// ("10MB" means 10 MiB per second).
type ByteRate uint64

// UnmarshalJSON accepts a non-negative integer or a size string.
func (r *ByteRate) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil {
			return fmt.Errorf("rate %s must be a whole number of bytes per second: %w", n, ErrInvalid)
		}
		*r = ByteRate(v)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("rate must be a number or a size string: %w", ErrInvalid)
	}
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*r = ByteRate(v)
	return nil
}

// Validate checks that enabled snapshots have a frequency and a keep count.
func (r RuntimeOptions) Validate() error {
	if !r.Snapshots {
		return nil
	}
	if r.Snapshot.Frequency <= 0 {
		return fmt.Errorf("runtime.snapshot.frequency is required when snapshots are on: %w", ErrInvalid)
	}
	if r.Snapshot.Frequency.D() < MinSnapshotFrequency {
		return fmt.Errorf("runtime.snapshot.frequency %s is shorter than %s: %w", r.Snapshot.Frequency, MinSnapshotFrequency, ErrInvalid)
	}
	if r.Snapshot.Keep == 0 && r.Snapshot.Tiers == (Tiers{}) {
		return fmt.Errorf("runtime.snapshot.keep (or tiers) must keep at least 1 snapshot when snapshots are on: %w", ErrInvalid)
	}
	return nil
}

// DecodeRuntime parses and validates a runtime document, such as the body of
// volcli volume runtime upload. It replaces the volume's whole runtime record.
func DecodeRuntime(data []byte) (RuntimeOptions, error) {
	var r RuntimeOptions
	if err := DecodeStrict(bytes.NewReader(data), &r); err != nil {
		return RuntimeOptions{}, fmt.Errorf("runtime options: %w", err)
	}
	if err := r.Validate(); err != nil {
		return RuntimeOptions{}, err
	}
	return r, nil
}

// RuntimeChange is what a mounting host follows of a volume whose runtime or
// volume record changed at etcd revision Revision: its runtime options and
// its size (which a resize changes while it is mounted).
type RuntimeChange struct {
	VolumeRef
	Runtime  RuntimeOptions `json:"runtime"`
	Size     string         `json:"size,omitempty"`
	Revision int64          `json:"revision"`
}

// RuntimeChanges answers GET /v1/runtimes (a long poll): the changes after
// the asked revision, and the revision to ask after next time.
type RuntimeChanges struct {
	Revision int64           `json:"revision"`
	Changes  []RuntimeChange `json:"changes"`
}
