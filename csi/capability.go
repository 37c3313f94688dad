package csi

import (
	"fmt"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/volplugin/volplugin/config"
)

// multiNode tells whether v may be used on several nodes at once: volumes
// without a cross-host mount lock (unlocked, and every nfs volume's shared
// export).
func multiNode(v *config.Volume) bool {
	return v.Unlocked || v.Backends.Mount == config.BackendNFS
}

// checkCapabilities says why caps do not fit v ("" when they do): every
// volume is a filesystem (no raw block) of its own filesystem type; only a
// volume without a mount lock may be used by several nodes.
func checkCapabilities(v *config.Volume, caps []*csipb.VolumeCapability) string {
	for _, c := range caps {
		if c.GetBlock() != nil {
			return "raw block access is not offered: volumes are filesystems"
		}
		m := c.GetMount()
		if m == nil {
			return "a capability must ask for mount access"
		}
		if fs := m.GetFsType(); fs != "" && fs != v.Create.Filesystem {
			return fmt.Sprintf("volume %s has filesystem %s, not %s", v.Ref(), v.Create.Filesystem, fs)
		}
		switch mode := c.GetAccessMode().GetMode(); mode {
		case csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:
		// SINGLE_NODE_SINGLE_WRITER and SINGLE_NODE_MULTI_WRITER go with the
		// SINGLE_NODE_MULTI_WRITER capability, not offered: one writer per
		// publish is not enforced.
		case csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
			csipb.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
			csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
			if !multiNode(v) {
				return fmt.Sprintf("volume %s has a mount lock (one host at a time): %s needs an unlocked or nfs volume", v.Ref(), mode)
			}
		default:
			return fmt.Sprintf("access mode %s is not offered", mode)
		}
	}
	return ""
}

// checkCapabilityFields refuses capabilities that say nothing: the spec
// wants InvalidArgument for a missing access type or mode.
func checkCapabilityFields(caps ...*csipb.VolumeCapability) error {
	for _, c := range caps {
		if c == nil {
			return missing("volume capability")
		}
		if c.GetBlock() == nil && c.GetMount() == nil {
			return missing("volume capability access type")
		}
		if c.GetAccessMode() == nil {
			return missing("volume capability access mode")
		}
	}
	return nil
}
