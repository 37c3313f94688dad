package config

import (
	"fmt"
	"time"
)

// A removed volume goes to the trash: its image is kept by the backend (rbd
// trash, or a trash directory of the local backend) and its whole record
// (policy copy, size, runtime, snapshot records) is kept in etcd under a
// trash key, until it is restored or purged. volsupervisor purges entries
// whose retention has passed.

// Retention bounds of a policy's trash.retention.
const (
	// DefaultTrashRetention applies when a policy sets none.
	DefaultTrashRetention = 7 * 24 * time.Hour
	MinTrashRetention     = time.Minute
	MaxTrashRetention     = 365 * 24 * time.Hour
)

// TrashSettings is a policy's (and its volumes') trash section.
type TrashSettings struct {
	// Retention is how long a removed volume stays restorable before
	// volsupervisor purges it; zero means DefaultTrashRetention.
	Retention Duration `json:"retention,omitzero"`
}

// RetentionOrDefault returns Retention, or DefaultTrashRetention if unset.
func (t TrashSettings) RetentionOrDefault() time.Duration {
	if t.Retention == 0 {
		return DefaultTrashRetention
	}
	return t.Retention.D()
}

func (t TrashSettings) validate() error {
	if r := t.Retention.D(); r != 0 && (r < MinTrashRetention || r > MaxTrashRetention) {
		return fmt.Errorf("trash.retention %s must be between %s and %s (or unset for %s): %w",
			t.Retention, Duration(MinTrashRetention), Duration(MaxTrashRetention), Duration(DefaultTrashRetention), ErrInvalid)
	}
	return nil
}

// checkProtect refuses protect with ephemeral: an ephemeral volume is
// removed automatically after its last unmount, which protect forbids.
func checkProtect(protect, ephemeral bool) error {
	if protect && ephemeral {
		return fmt.Errorf("protect cannot be combined with ephemeral: an ephemeral volume is removed automatically "+
			"after its last unmount, a protected one never is: %w", ErrInvalid)
	}
	return nil
}

// TrashIDFormat is the format of trash entry IDs: the UTC time of the
// removal, so IDs sort in time order. With the volume's name it is unique:
// etcd refuses a second entry under the same key.
const TrashIDFormat = "20060102T150405.000000Z"

// TrashID returns the ID of a volume removed at t.
func TrashID(t time.Time) string { return t.UTC().Format(TrashIDFormat) }

// ValidateTrashID checks an ID given by a user.
func ValidateTrashID(id string) error {
	if _, err := time.Parse(TrashIDFormat, id); err != nil {
		return fmt.Errorf("trash ID %q is not a removal time like 20260102T150405.000000Z: %w", id, ErrInvalid)
	}
	return nil
}

// TrashEntry is one removed volume in the trash. Volume is the whole
// record as it was (runtime included), so a restore brings it back
// exactly; Snapshots are its snapshot records.
type TrashEntry struct {
	ID        string     `json:"id"`
	Volume    Volume     `json:"volume"`
	Snapshots []Snapshot `json:"snapshots,omitempty"`
	// Usage is the volume's usage record (last mount and unmount), if any.
	Usage     *Usage    `json:"usage,omitempty"`
	RemovedAt time.Time `json:"removed-at"`
	RemovedBy string    `json:"removed-by,omitempty"`
	// Expires is when volsupervisor purges the entry (RemovedAt plus the
	// volume's trash.retention).
	Expires time.Time `json:"expires"`
	// Handle is the backend's name for the trashed image (the rbd image
	// ID; the local backend's trash directory name); empty for a
	// mount-only volume, which has no image.
	Handle string `json:"handle,omitempty"`
	// Purging is set once a purge started: the entry can then only be
	// purged (again), never restored, since its image may be half gone.
	Purging bool `json:"purging,omitempty"`
}

// Ref returns the trashed volume's reference.
func (e *TrashEntry) Ref() VolumeRef { return e.Volume.Ref() }

// TrashRef names one trash entry: policy/name@ID.
type TrashRef struct {
	Volume VolumeRef
	ID     string
}

func (r TrashRef) String() string { return r.Volume.String() + "@" + r.ID }

// Validate checks the volume reference and the ID.
func (r TrashRef) Validate() error {
	if err := r.Volume.Validate(); err != nil {
		return err
	}
	return ValidateTrashID(r.ID)
}

// RemoveOptions are the query parameters of DELETE /v1/volumes/{policy}/{name}.
type RemoveOptions struct {
	// Force removes every record of the volume (snapshot records, usage
	// and runtime included) in one transaction and leaves its image in the
	// backend; nothing goes to the trash.
	Force bool
	// Unprotect allows the removal of a protected volume. Only volcli
	// volume remove --unprotect sends it; volplugin (docker volume rm,
	// docker volume prune) never does.
	Unprotect bool
}

// ProtectedError is the refusal of a remove of protected volume ref.
func ProtectedError(ref VolumeRef) error {
	return fmt.Errorf("volume %s is protected (policy or volume option protect=true): docker volume rm and prune "+
		"never remove it; to remove it, run `volcli volume remove --unprotect %s`: %w", ref, ref, ErrProtected)
}
