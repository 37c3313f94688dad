package config

import (
	"fmt"
	"time"
)

// MinSnapshotFrequency is the shortest snapshot schedule any policy or
// volume may have: sub-second "schedules" (1ns) are a full copy per
// supervisor round, never a schedule.
const MinSnapshotFrequency = time.Second

// Limits bound what a policy's volumes may cost, whoever creates or changes
// them (docker volume create -o, runtime uploads, resize, copies). A zero
// field is no limit.
type Limits struct {
	// MaxSize bounds each volume's size.
	MaxSize string `json:"max-size,omitempty"`
	// MaxVolumes and MaxTotalSize bound the policy's volumes together.
	MaxVolumes   uint   `json:"max-volumes,omitzero"`
	MaxTotalSize string `json:"max-total-size,omitempty"`
	// MinSnapshotFrequency is the shortest snapshot schedule allowed.
	MinSnapshotFrequency Duration `json:"min-snapshot-frequency,omitzero"`
	// MaxKeep bounds how many snapshots one volume keeps: keep plus its
	// tiers, scheduled and on-demand snapshots together.
	MaxKeep uint `json:"max-keep,omitzero"`
}

func (l Limits) validate() error {
	for name, s := range map[string]string{"limits.max-size": l.MaxSize, "limits.max-total-size": l.MaxTotalSize} {
		if s == "" {
			continue
		}
		if _, err := ParseSize(s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func limitBytes(s string) int64 {
	n, _ := ParseSize(s) // validated on upload
	return n
}

// CheckSize refuses a volume of size bytes larger than MaxSize.
func (l Limits) CheckSize(size int64) error {
	if l.MaxSize != "" && size > limitBytes(l.MaxSize) {
		return fmt.Errorf("size %d bytes is over the policy's limits.max-size %s: %w", size, l.MaxSize, ErrInvalid)
	}
	return nil
}

// CheckRuntime refuses snapshot settings beyond the limits.
func (l Limits) CheckRuntime(r RuntimeOptions) error {
	if !r.Snapshots {
		return nil
	}
	if min := l.MinSnapshotFrequency; min > 0 && r.Snapshot.Frequency < min {
		return fmt.Errorf("snapshot frequency %s is shorter than the policy's limits.min-snapshot-frequency %s: %w",
			r.Snapshot.Frequency, min, ErrInvalid)
	}
	if l.MaxKeep > 0 {
		t := r.Snapshot.Tiers
		if kept := r.Snapshot.Keep + t.Hourly + t.Daily + t.Weekly; kept > l.MaxKeep {
			return fmt.Errorf("snapshot keep and tiers keep up to %d snapshots, over the policy's limits.max-keep %d: %w",
				kept, l.MaxKeep, ErrInvalid)
		}
	}
	return nil
}

// PruneKeep is the keep count to prune a volume with snapshot settings s
// to after an on-demand snapshot: s.Keep, unless it keeps everything (0
// without tiers) or more than MaxKeep, which on-demand snapshots count
// against.
func (l Limits) PruneKeep(s SnapshotConfig) uint {
	if l.MaxKeep > 0 && (s.Keep == 0 && s.Tiers == (Tiers{}) || s.Keep > l.MaxKeep) {
		return l.MaxKeep
	}
	return s.Keep
}

// CheckCount refuses one more volume of size bytes in a policy that has
// count volumes of total bytes already.
func (l Limits) CheckCount(count int, total, size int64) error {
	if l.MaxVolumes > 0 && uint(count) >= l.MaxVolumes {
		return fmt.Errorf("the policy has %d volumes, its limits.max-volumes: %w", count, ErrInvalid)
	}
	if l.MaxTotalSize != "" && total+size > limitBytes(l.MaxTotalSize) {
		return fmt.Errorf("the policy's volumes would total %d bytes, over its limits.max-total-size %s: %w",
			total+size, l.MaxTotalSize, ErrInvalid)
	}
	return nil
}
