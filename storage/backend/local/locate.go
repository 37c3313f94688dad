package local

import (
	"context"
	"errors"
	"fmt"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Locate finds where v's image is mounted through any of its loop devices,
// whatever the mount point.
func (b *Backend) Locate(ctx context.Context, v storage.Volume) (storage.Mount, bool, error) {
	p, err := b.paths(v.Policy, v.Name)
	if err != nil {
		return storage.Mount{}, false, fmt.Errorf("locate: %w", err)
	}
	if err := statImage(p.image); errors.Is(err, storage.ErrNotFound) {
		return storage.Mount{}, false, nil
	} else if err != nil {
		return storage.Mount{}, false, volErr("locate", v, err)
	}
	devs, err := b.loops(ctx, p.image)
	if err != nil {
		return storage.Mount{}, false, volErr("locate", v, err)
	}
	infos, err := fsutil.MountsOf(devs, p.mount)
	if err != nil || len(infos) == 0 {
		return storage.Mount{}, false, err
	}
	return storage.Mount{Volume: id(v), Device: infos[0].Source, Path: infos[0].Mountpoint}, true, nil
}
