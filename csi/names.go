package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/volplugin/volplugin/config"
)

// hashedPrefix starts the volume name made for a CSI name that is not a
// valid volume name itself.
const hashedPrefix = "csi-"

// VolumeName maps a CSI volume name (CreateVolume's name, which Kubernetes
// makes "pvc-<uid>") to the volmaster volume name: the CSI name itself when
// it is a valid volume name (config.ValidateName), else "csi-" and the first
// 40 hex digits of its SHA-256. The mapping is deterministic, so a repeated
// CreateVolume finds the volume the first one made.
func VolumeName(csiName string) string {
	if config.ValidateName("volume", csiName) == nil {
		return csiName
	}
	sum := sha256.Sum256([]byte(csiName))
	return hashedPrefix + hex.EncodeToString(sum[:])[:40]
}

// volumeRef reads a CSI volume ID, which is the volume's policy/name. An ID
// that is not one names no volume of ours: config.ErrNotFound, as the spec
// wants for an unknown ID.
func volumeRef(id string) (config.VolumeRef, error) {
	if id == "" {
		return config.VolumeRef{}, missing("volume ID")
	}
	ref, err := config.ParseVolumeRef(id)
	if err != nil {
		return config.VolumeRef{}, fmt.Errorf("volume ID %q is not a POLICY/NAME of this driver: %w", id, config.ErrNotFound)
	}
	return ref, nil
}
