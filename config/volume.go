package config

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Volume is the full record of one volume: its name, the copy of its policy
// taken at creation (backends, driver, create options, filesystems, flags) and
// its runtime options, which are stored under their own key so that they can
// change while the volume is mounted.
type Volume struct {
	Policy         string    `json:"policy"`
	Name           string    `json:"name"`
	PolicyRevision int64     `json:"policy-revision,omitzero"`
	CreatedAt      time.Time `json:"created-at,omitzero"`
	// ResizedAt is when the volume last grew (POST .../resize): Create.Size
	// is then its current size, and each mount grows a filesystem smaller
	// than its device (storage.Volume.Grow).
	ResizedAt time.Time `json:"resized-at,omitzero"`
	// FormattedAt is when volmaster learnt that the volume's first mkfs
	// succeeded (PUT .../formatted, from the host that ran it). A formatted
	// volume is never formatted again: a mount that finds no filesystem on
	// it refuses it and names the repair command. Zero for a volume never
	// mounted, and for volumes created before this field (they are marked at
	// their next mount).
	FormattedAt time.Time `json:"formatted-at,omitzero"`
	// RestoredAt is when the volume last came back from the trash: it
	// counts as a use, so reclamation does not take a volume again at once
	// for having been unused before its removal.
	RestoredAt time.Time `json:"restored-at,omitzero"`
	// Image is the backend's name for the volume's image when it is not the
	// one the backend derives from policy and name: a Ceph image adopted
	// from the original volplugin keeps its name, <policy>.<volume>
	// (volcli migrate from-contiv). Empty for volumes created here.
	Image     string         `json:"image,omitempty"`
	Backends  Backends       `json:"backends"`
	Driver    Driver         `json:"driver"`
	Create    CreateOptions  `json:"create"`
	Runtime   RuntimeOptions `json:"runtime,omitzero"`
	Unlocked  bool           `json:"unlocked,omitempty"`
	Ephemeral bool           `json:"ephemeral,omitempty"`
	Reclaim   Reclaim        `json:"reclaim,omitzero"`
	// Protect: from the policy or the protect option (see Policy.Protect).
	Protect     bool                 `json:"protect,omitempty"`
	Trash       TrashSettings        `json:"trash,omitzero"`
	FileSystems map[string]FSCommand `json:"filesystems,omitempty"`
	NoExec      bool                 `json:"noexec,omitempty"`
}

// Ref returns the volume's policy/name reference.
func (v *Volume) Ref() VolumeRef { return VolumeRef{Policy: v.Policy, Name: v.Name} }

// Formatted tells whether the volume's filesystem was made (FormattedAt).
func (v *Volume) Formatted() bool { return !v.FormattedAt.IsZero() }

// FormattedRequest is the body of PUT /v1/volumes/{policy}/{name}/formatted:
// the host that mounted the volume, and the volume's created-at as that host
// read it, so that a late request cannot mark a volume created again under
// the same name (zero: not checked).
type FormattedRequest struct {
	Host      string    `json:"host"`
	CreatedAt time.Time `json:"created-at,omitzero"`
}

// SizeBytes returns the parsed create size, 0 for backends without one.
func (v *Volume) SizeBytes() (int64, error) {
	if v.Create.Size == "" {
		return 0, nil
	}
	return ParseSize(v.Create.Size)
}

// MkfsCommand returns the command that formats this volume's filesystem.
func (v *Volume) MkfsCommand() (FSCommand, error) {
	cmd, ok := v.FileSystems[v.Create.Filesystem]
	if !ok {
		return nil, fmt.Errorf("volume %s: filesystem %q has no command: %w", v.Ref(), v.Create.Filesystem, ErrInvalid)
	}
	// Checked again where it runs: a record written before the allowlist,
	// or by anyone but volmaster, must not choose what runs as root.
	if err := CheckFSCommand(cmd); err != nil {
		return nil, fmt.Errorf("volume %s: filesystem %s: %w", v.Ref(), v.Create.Filesystem, err)
	}
	return cmd, nil
}

// ResizeRequest is the body of POST /v1/volumes/{policy}/{name}/resize.
type ResizeRequest struct {
	Size string `json:"size"`
}

// Grow returns v at size s (a size like 2GiB), validated: volumes only grow,
// and only volumes whose backend has a size. The same size again is allowed
// (it grows a filesystem an earlier resize left behind).
func (v Volume) Grow(s string, now time.Time) (Volume, int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return Volume{}, 0, err
	}
	cur, err := v.SizeBytes()
	if err != nil {
		return Volume{}, 0, err
	}
	if cur == 0 {
		return Volume{}, 0, fmt.Errorf("volume %s has no size (backend %s): %w", v.Ref(), v.Backends.CRUD, ErrInvalid)
	}
	if n < cur {
		return Volume{}, 0, fmt.Errorf("volume %s is %s; volumes only grow (asked for %s): %w", v.Ref(), v.Create.Size, s, ErrInvalid)
	}
	v.Create.Size = strings.TrimSpace(s)
	v.ResizedAt = now.UTC()
	return v, n, nil
}

// VolumeRequest is the body of POST /v1/volumes.
type VolumeRequest struct {
	Policy  string            `json:"policy"`
	Name    string            `json:"name"`
	Options map[string]string `json:"options,omitempty"`
}

// NewVolume builds a volume record from a policy (taken at revision rev) and
// the creation options, validating everything before any work starts.
func NewVolume(ref VolumeRef, p Policy, rev int64, opts map[string]string, now time.Time) (Volume, error) {
	if err := ref.Validate(); err != nil {
		return Volume{}, err
	}
	v := Volume{
		Policy:         ref.Policy,
		Name:           ref.Name,
		PolicyRevision: rev,
		CreatedAt:      now.UTC(),
		Backends:       p.Backends,
		Driver:         Driver{Pool: p.Driver.Pool, Options: maps.Clone(p.Driver.Options)},
		Create:         p.Create,
		Runtime:        p.Runtime,
		Unlocked:       p.Unlocked,
		NoExec:         p.NoExec,
		Ephemeral:      p.Ephemeral,
		Reclaim:        p.Reclaim,
		Protect:        p.Protect,
		Trash:          p.Trash,
		FileSystems:    p.AllFilesystems(),
	}
	if p.Backends.CRUD == "" {
		v.FileSystems = nil
	}
	if err := v.applyOptions(opts); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	if err := v.Create.validate(v.FileSystems); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	// Checked again for the volume: a policy stored before this check, or an
	// ephemeral option, may break it.
	if err := checkUnlocked(v.Backends.Mount, v.Unlocked, v.Ephemeral, v.Reclaim); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	if err := checkProtect(v.Protect, v.Ephemeral); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	if err := v.Runtime.Validate(); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	if err := p.Limits.CheckRuntime(v.Runtime); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
	}
	if v.Create.Size != "" {
		n, err := v.SizeBytes()
		if err != nil {
			return Volume{}, err
		}
		if err := p.Limits.CheckSize(n); err != nil {
			return Volume{}, fmt.Errorf("volume %s: %w", ref, err)
		}
	}
	return v, nil
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false: %w", s, ErrInvalid)
	}
	return b, nil
}

func parseUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole non-negative number: %w", s, ErrInvalid)
	}
	return n, nil
}
