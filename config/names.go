package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// MaxNameLength is the longest policy or volume name accepted.
const MaxNameLength = 64

// NamePattern is the pattern every policy and volume name must match: an ASCII
// letter or digit first, then letters, digits, '_', '.' or '-', at most 64
// characters in all. It rules out '/', whitespace, control characters and the
// names "." and "..", so a name can be used as one path element or one etcd
// key segment without escaping.
const NamePattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`

var nameRE = regexp.MustCompile(NamePattern)

// ValidateName checks a policy or volume name; kind ("policy", "volume") is
// used in the error message.
func ValidateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty: %w", kind, ErrInvalid)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%s name %.20q... is longer than %d characters: %w", kind, name, MaxNameLength, ErrInvalid)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s name %q is not a valid name (a letter or digit, then letters, digits, '_', '.' or '-'; at most 64 characters): %w", kind, name, ErrInvalid)
	}
	return nil
}

// VolumeRef names a volume as policy/name.
type VolumeRef struct {
	Policy string `json:"policy"`
	Name   string `json:"name"`
}

// String returns "policy/name".
func (r VolumeRef) String() string { return r.Policy + "/" + r.Name }

// Validate checks both halves of the reference.
func (r VolumeRef) Validate() error {
	if err := ValidateName("policy", r.Policy); err != nil {
		return err
	}
	return ValidateName("volume", r.Name)
}

// ParseVolumeRef parses "policy/name" and validates both names.
func ParseVolumeRef(s string) (VolumeRef, error) {
	policy, name, ok := strings.Cut(s, "/")
	if !ok {
		return VolumeRef{}, fmt.Errorf("volume %q must be given as POLICY/NAME: %w", s, ErrInvalid)
	}
	ref := VolumeRef{Policy: policy, Name: name}
	if err := ref.Validate(); err != nil {
		return VolumeRef{}, err
	}
	return ref, nil
}

// MaxSize bounds sizes so that byte counts never overflow an int64.
const MaxSize = int64(1) << 60

// ParseSize parses a size such as "10MB", "1GiB", "512k" or "1048576" (bytes).
// Units are binary whatever their spelling (10MB = 10 MiB), as block-device
// tools such as rbd count them. Zero, negative and unparsable sizes are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("size is empty: %w", ErrInvalid)
	}
	// Plain byte counts are parsed as integers: the unit parser goes through
	// float64 and would round counts above 2^53.
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		n, err = units.RAMInBytes(t)
	}
	if err != nil {
		return 0, fmt.Errorf("size %q is not a size like 10MB or 1GiB: %w", s, ErrInvalid)
	}
	if n <= 0 || n > MaxSize {
		return 0, fmt.Errorf("size %q must be between 1 byte and 1 EiB: %w", s, ErrInvalid)
	}
	return n, nil
}

// MaxBackendSnapshotName bounds ValidateBackendSnapshotName.
const MaxBackendSnapshotName = 255

// ValidateBackendSnapshotName checks a snapshot name the suite did not make
// but adopted (config.Snapshot.Backend: an RBD snapshot the original
// volplugin named by its time.String(), "2017-06-01 10:00:00.5 +0000 UTC").
// It is only ever passed to librbd as one argument, never to a shell or a
// path, so it may hold spaces; it may not hold '/', '@' (RBD's image@snap
// separator) or control characters.
func ValidateBackendSnapshotName(name string) error {
	if name == "" || len(name) > MaxBackendSnapshotName {
		return fmt.Errorf("snapshot name %.40q must be 1..%d bytes: %w", name, MaxBackendSnapshotName, ErrInvalid)
	}
	for _, r := range name {
		if r == '/' || r == '@' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("snapshot name %q holds %q: %w", name, r, ErrInvalid)
		}
	}
	return nil
}
