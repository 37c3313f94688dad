package config

import (
	"fmt"
	"time"
)

// Records brought in from another installation (volcli migrate
// from-contiv) go through volmaster's import routes, one policy, volume or
// global configuration per request. Each is create-if-absent: a record that
// is already there as imported is left alone, so an import run twice writes
// nothing the second time.

// Import actions (ImportResult.Action).
const (
	// ImportCreated: written; in a dry run, would be written.
	ImportCreated = "created"
	// ImportUnchanged: already there as imported; nothing written (an
	// imported volume may still get records for snapshots new since).
	ImportUnchanged = "unchanged"
	// ImportKept: something else is stored there and stays (a global
	// configuration uploaded here before the import).
	ImportKept = "kept"
)

// ImportResult says what volmaster did, or in a dry run would do, with one
// imported record.
type ImportResult struct {
	Action string `json:"action"`
	// Snapshots are the backend snapshots adopted as the volume's
	// snapshots (records written, or to be written in a dry run).
	Snapshots []Snapshot `json:"snapshots,omitempty"`
	// Notes say what volmaster could not check or carry over, and why.
	Notes []string `json:"notes,omitempty"`
}

// PolicyImport is the body of POST /v1/import/policies/{policy}: the
// policy's history, oldest first. The last revision is the current policy
// unless Deleted (the original kept revisions of a deleted policy).
type PolicyImport struct {
	Revisions []ImportedRevision `json:"revisions"`
	Deleted   bool               `json:"deleted,omitempty"`
}

// ImportedRevision is one revision of an imported policy and when it was
// uploaded.
type ImportedRevision struct {
	Time   time.Time `json:"time"`
	Policy Policy    `json:"policy"`
}

// Normalize names and validates every revision.
func (pi *PolicyImport) Normalize(name string) error {
	if len(pi.Revisions) == 0 {
		return fmt.Errorf("policy %s: no revisions to import: %w", name, ErrInvalid)
	}
	for i := range pi.Revisions {
		pi.Revisions[i].Policy.Name = name
		if err := pi.Revisions[i].Policy.Normalize(); err != nil {
			return fmt.Errorf("revision %d: %w", i+1, err)
		}
	}
	return nil
}

// VolumeImport is the body of POST /v1/import/volumes/{policy}/{name}: the
// volume's record with its runtime options, as the importer converted it.
// Its image is adopted as it is: never created, renamed or formatted.
type VolumeImport struct {
	Volume Volume `json:"volume"`
}

// OriginalImageName is the name the original volplugin gave a volume's Ceph
// image (its Ceph driver's internal name): <policy>.<volume>, in the pool of
// the volume's driver options. Ours contain a colon, which names never do,
// so the two never meet; two of the original's can ("a.b"/"c" and "a"/"b.c"),
// which ImageOwners lists.
func OriginalImageName(policy, volume string) string { return policy + "." + volume }

// ImageOwners are the other volumes whose original image name is image: the
// other splits of it at a dot into valid names.
func ImageOwners(image string, self VolumeRef) []VolumeRef {
	var refs []VolumeRef
	for i := 0; i < len(image); i++ {
		if image[i] != '.' {
			continue
		}
		r := VolumeRef{Policy: image[:i], Name: image[i+1:]}
		if r != self && r.Validate() == nil {
			refs = append(refs, r)
		}
	}
	return refs
}

// CheckImported validates an imported volume record: names, backends,
// create options, filesystems, runtime, and the image name it adopts.
func (v *Volume) CheckImported() error {
	if err := v.Ref().Validate(); err != nil {
		return err
	}
	if err := v.Backends.validate(); err != nil {
		return fmt.Errorf("volume %s: %w", v.Ref(), err)
	}
	if v.Image != "" {
		if v.Backends.CRUD != BackendCeph {
			return fmt.Errorf("volume %s: only a ceph volume adopts an image by name: %w", v.Ref(), ErrInvalid)
		}
		if err := ValidateName("image", v.Image); err != nil {
			return fmt.Errorf("volume %s: %w", v.Ref(), err)
		}
		// Only the original's own name is adopted: an arbitrary one could
		// be another volume's image, and two records on one image would let
		// two hosts mount it (each holding its own volume's lock, one
		// fencing the other).
		if want := OriginalImageName(v.Policy, v.Name); v.Image != want {
			return fmt.Errorf("volume %s: image %q is not the original's name for it (%s): %w", v.Ref(), v.Image, want, ErrInvalid)
		}
	}
	if v.Driver.Pool != "" {
		if err := ValidateName("pool", v.Driver.Pool); err != nil {
			return fmt.Errorf("volume %s: %w", v.Ref(), err)
		}
	}
	for fs, cmd := range v.FileSystems {
		if err := ValidateName("filesystem", fs); err != nil {
			return fmt.Errorf("volume %s: %w", v.Ref(), err)
		}
		if err := CheckFSCommand(cmd); err != nil {
			return fmt.Errorf("volume %s: filesystem %s: %w", v.Ref(), fs, err)
		}
	}
	if v.Backends.CRUD != "" && v.Create.Size == "" {
		return fmt.Errorf("volume %s: create.size is required for backend %s: %w", v.Ref(), v.Backends.CRUD, ErrInvalid)
	}
	if err := v.Create.validate(v.FileSystems); err != nil {
		return fmt.Errorf("volume %s: %w", v.Ref(), err)
	}
	if src, ok := v.Driver.Options[DriverSource]; ok && v.Backends.Mount == BackendNFS {
		if err := CheckNFSSource(src); err != nil {
			return fmt.Errorf("volume %s: %w", v.Ref(), err)
		}
	}
	if err := checkUnlocked(v.Backends.Mount, v.Unlocked, v.Ephemeral, v.Reclaim); err != nil {
		return fmt.Errorf("volume %s: %w", v.Ref(), err)
	}
	if err := checkProtect(v.Protect, v.Ephemeral); err != nil {
		return fmt.Errorf("volume %s: %w", v.Ref(), err)
	}
	if err := v.Runtime.Validate(); err != nil {
		return fmt.Errorf("volume %s: %w", v.Ref(), err)
	}
	return nil
}
