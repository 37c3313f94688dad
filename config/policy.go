package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"
)

// PolicyRevisionHeader is the HTTP header in which volmaster gives the
// revision number of a policy it returns (GET and PUT /v1/policies/NAME).
const PolicyRevisionHeader = "X-Policy-Revision"

// IdempotencyKeyHeader names a request: volmaster answers every request that
// carries the same key (from the same caller, within an hour) with the answer
// of the first, so a retried create, policy upload or remove is neither done
// twice nor answered with a false 409 or 404.
const IdempotencyKeyHeader = "Idempotency-Key"

// IdempotentReplayHeader is set on an answer replayed for a repeated
// Idempotency-Key.
const IdempotentReplayHeader = "Idempotent-Replayed"

// Backend names.
const (
	BackendCeph  = "ceph"
	BackendLocal = "local"
	BackendNFS   = "nfs"
)

// DefaultFilesystem is used when a policy names none.
const DefaultFilesystem = "ext4"

// DefaultFilesystems are the mkfs commands known without a policy saying so.
// A policy's own "filesystems" entries override these by name.
func DefaultFilesystems() map[string]FSCommand {
	return map[string]FSCommand{
		"ext4": {"mkfs.ext4", "-m0", DevicePlaceholder},
		"xfs":  {"mkfs.xfs", DevicePlaceholder},
	}
}

// DevicePlaceholder is the argv element replaced by the device path in a
// filesystem command.
const DevicePlaceholder = "%"

// Policy is a named template for volumes. Create, driver and backends are
// copied into a volume when it is created and never change afterwards; the
// runtime part seeds the volume's runtime record, which may change while the
// volume is mounted.
type Policy struct {
	Name string `json:"name"`
	// Backend is the original shorthand for setting all of Backends; Normalize
	// folds it in and clears it.
	Backend   string         `json:"backend,omitempty"`
	Backends  Backends       `json:"backends"`
	Driver    Driver         `json:"driver"`
	Create    CreateOptions  `json:"create"`
	Runtime   RuntimeOptions `json:"runtime"`
	Unlocked  bool           `json:"unlocked,omitempty"`
	Ephemeral bool           `json:"ephemeral,omitempty"`
	Reclaim   Reclaim        `json:"reclaim,omitzero"`
	// Protect: its volumes are never removed by docker volume rm or prune
	// (volplugin) nor by volsupervisor; only volcli volume remove
	// --unprotect removes one.
	Protect bool `json:"protect,omitempty"`
	// Trash configures how long its removed volumes stay restorable.
	Trash       TrashSettings        `json:"trash,omitzero"`
	FileSystems map[string]FSCommand `json:"filesystems,omitempty"`
	// NoExec mounts the policy's volumes noexec (every mount is nosuid and
	// nodev already): nothing stored in them can be run.
	NoExec bool `json:"noexec,omitempty"`
	// Limits bound sizes, counts and snapshots of the policy's volumes.
	Limits Limits `json:"limits,omitzero"`
}

// Backends names the backend used for each concern. CRUD and Snapshot are
// empty for mount-only backends such as NFS.
type Backends struct {
	CRUD     string `json:"crud"`
	Mount    string `json:"mount"`
	Snapshot string `json:"snapshot"`
}

// Driver holds backend options: the Ceph pool and free-form options such as
// a Ceph user or an NFS source.
type Driver struct {
	Pool    string            `json:"pool,omitempty"`
	Options map[string]string `json:"options,omitempty"`
}

// CreateOptions are fixed when a volume is created.
type CreateOptions struct {
	Size       string `json:"size,omitempty"`
	Filesystem string `json:"filesystem,omitempty"`
}

// Reclaim configures removal of volumes left unmounted for a period.
// UnusedFor alone only reports them (volcli volume reclaim --dry-run);
// with Enabled, volsupervisor removes them, snapshots included.
type Reclaim struct {
	UnusedFor Duration `json:"unused-for,omitzero"`
	Enabled   bool     `json:"enabled,omitempty"`
}

// FSCommand is a mkfs argv; the element "%" is replaced by the device. In
// JSON it is an array of strings, or a string split on whitespace (never run
// through a shell), as in the original policy files: "mkfs.ext4 -m0 %".
type FSCommand []string

// UnmarshalJSON accepts an array of strings or a whitespace-separated string.
func (c *FSCommand) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return fmt.Errorf("filesystem command: %w", ErrInvalid)
		}
		*c = strings.Fields(s)
		return nil
	}
	var argv []string
	if err := json.Unmarshal(b, &argv); err != nil {
		return fmt.Errorf("filesystem command must be a string or an array of strings: %w", ErrInvalid)
	}
	*c = argv
	return nil
}

// Argv returns the command with the placeholder replaced by device.
func (c FSCommand) Argv(device string) []string {
	out := make([]string, len(c))
	for i, a := range c {
		if a == DevicePlaceholder {
			a = device
		}
		out[i] = a
	}
	return out
}

// DecodeStrict decodes exactly one JSON value from r into v, rejecting unknown
// fields, trailing data and an empty body. Every JSON document that users send
// goes through it.
func DecodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("empty JSON document: %w", ErrInvalid)
		}
		if errors.Is(err, ErrInvalid) {
			return err
		}
		return fmt.Errorf("bad JSON: %v: %w", err, ErrInvalid)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("bad JSON: unexpected data after the document: %w", ErrInvalid)
	}
	return nil
}

// DecodePolicy parses, normalizes and validates a policy document. The name
// given (from the URL or command line) replaces any name in the document.
func DecodePolicy(name string, data []byte) (Policy, error) {
	var p Policy
	if err := DecodeStrict(bytes.NewReader(data), &p); err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	p.Name = name
	if err := p.Normalize(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Normalize folds the backend shorthand into Backends, fills defaults and
// validates the policy.
func (p *Policy) Normalize() error {
	if err := ValidateName("policy", p.Name); err != nil {
		return err
	}
	if p.Backend != "" {
		b := Backends{CRUD: p.Backend, Mount: p.Backend, Snapshot: p.Backend}
		if p.Backend == BackendNFS {
			b = Backends{Mount: BackendNFS}
		}
		if p.Backends != (Backends{}) && p.Backends != b {
			return fmt.Errorf("policy %s: \"backend\" and \"backends\" disagree: %w", p.Name, ErrInvalid)
		}
		p.Backends, p.Backend = b, ""
	}
	if err := p.Backends.validate(); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if p.Backends.Mount == BackendCeph && p.Driver.Pool == "" {
		p.Driver.Pool = "rbd"
	}
	if p.Driver.Pool != "" {
		if err := ValidateName("pool", p.Driver.Pool); err != nil {
			return fmt.Errorf("policy %s: %w", p.Name, err)
		}
	}
	for fs, cmd := range p.FileSystems {
		if err := ValidateName("filesystem", fs); err != nil {
			return fmt.Errorf("policy %s: %w", p.Name, err)
		}
		if err := CheckFSCommand(cmd); err != nil {
			return fmt.Errorf("policy %s: filesystem %s: %w", p.Name, fs, err)
		}
	}
	if p.Backends.CRUD != "" {
		if p.Create.Size == "" {
			return fmt.Errorf("policy %s: create.size is required for backend %s: %w", p.Name, p.Backends.CRUD, ErrInvalid)
		}
		if p.Create.Filesystem == "" {
			p.Create.Filesystem = DefaultFilesystem
		}
	}
	if err := p.Create.validate(p.AllFilesystems()); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if err := p.checkLimits(); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if err := checkUnlocked(p.Backends.Mount, p.Unlocked, p.Ephemeral, p.Reclaim); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if err := checkProtect(p.Protect, p.Ephemeral); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if err := p.Trash.validate(); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	if err := p.Runtime.Validate(); err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	return nil
}

// AllFilesystems returns the default filesystems overlaid with the policy's.
func (p *Policy) AllFilesystems() map[string]FSCommand {
	all := DefaultFilesystems()
	maps.Copy(all, p.FileSystems)
	return all
}

func (b Backends) validate() error {
	known := func(s string) bool { return s == BackendCeph || s == BackendLocal || s == BackendNFS }
	if b.Mount == "" {
		return fmt.Errorf("a backend is required (\"backend\": \"local\", \"ceph\" or \"nfs\"): %w", ErrInvalid)
	}
	for _, s := range []string{b.CRUD, b.Mount, b.Snapshot} {
		if s != "" && !known(s) {
			return fmt.Errorf("unknown backend %q (known: ceph, local, nfs): %w", s, ErrInvalid)
		}
	}
	for _, s := range []string{b.CRUD, b.Snapshot} {
		if s == "" {
			continue
		}
		if s == BackendNFS {
			return fmt.Errorf("backend nfs can only mount, not create or snapshot: %w", ErrInvalid)
		}
		if s != b.Mount {
			return fmt.Errorf("backends must agree: crud/snapshot %q but mount %q: %w", s, b.Mount, ErrInvalid)
		}
	}
	return nil
}

// checkUnlocked refuses "unlocked" where it is unsafe: on a block backend
// (local, ceph) two hosts would mount one filesystem image at once, which
// corrupts it; and with ephemeral or reclaim, since unlocked mounts leave no
// usage record, so nothing can prove the volume unused.
func checkUnlocked(mount string, unlocked, ephemeral bool, reclaim Reclaim) error {
	if !unlocked {
		return nil
	}
	if mount != BackendNFS {
		return fmt.Errorf("unlocked is allowed only on the mount-only shared backend nfs, not %s: "+
			"two hosts mounting one %s volume at once corrupt its filesystem: %w", mount, mount, ErrInvalid)
	}
	if ephemeral || reclaim != (Reclaim{}) {
		return fmt.Errorf("unlocked cannot be combined with ephemeral or reclaim: unlocked mounts take no lock "+
			"and leave no usage record, so nothing proves the volume unused: %w", ErrInvalid)
	}
	return nil
}

func (c CreateOptions) validate(filesystems map[string]FSCommand) error {
	if c.Size != "" {
		if _, err := ParseSize(c.Size); err != nil {
			return fmt.Errorf("create.size: %w", err)
		}
	}
	if c.Filesystem != "" {
		if _, ok := filesystems[c.Filesystem]; !ok {
			return fmt.Errorf("create.filesystem %q is not defined in \"filesystems\" (nor built in): %w", c.Filesystem, ErrInvalid)
		}
	}
	return nil
}

// PolicyRevision summarizes one stored upload of a policy.
type PolicyRevision struct {
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
}

// checkLimits validates the limits and the policy's own defaults against
// them.
func (p *Policy) checkLimits() error {
	if err := p.Limits.validate(); err != nil {
		return err
	}
	if p.Create.Size != "" {
		n, err := ParseSize(p.Create.Size)
		if err != nil {
			return err
		}
		if err := p.Limits.CheckSize(n); err != nil {
			return fmt.Errorf("create.size: %w", err)
		}
	}
	if err := p.Runtime.Validate(); err != nil {
		return err
	}
	return p.Limits.CheckRuntime(p.Runtime)
}
