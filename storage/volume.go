package storage

import (
	"github.com/volplugin/volplugin/config"
)

// FromConfig derives the backend's view of a volume record.
func FromConfig(v *config.Volume) (Volume, error) {
	size, err := v.SizeBytes()
	if err != nil {
		return Volume{}, err
	}
	out := Volume{
		Policy:     v.Policy,
		Name:       v.Name,
		Image:      v.Image,
		Size:       size,
		Pool:       v.Driver.Pool,
		Options:    v.Driver.Options,
		Filesystem: v.Create.Filesystem,
		Grow:       !v.ResizedAt.IsZero(),
		Formatted:  v.Formatted(),
		NoExec:     v.NoExec,
	}
	if v.Create.Filesystem != "" {
		cmd, err := v.MkfsCommand()
		if err != nil {
			return Volume{}, err
		}
		out.Mkfs = cmd
	}
	return out, nil
}
