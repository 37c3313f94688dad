//go:build cgo && pacific

package ceph

import (
	"context"
	"errors"
	"fmt"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Locate finds where v's image is mounted through its mapped device,
// whatever the mount point. It needs no cluster connection.
func (b *Backend) Locate(ctx context.Context, v storage.Volume) (storage.Mount, bool, error) {
	vl, err := b.resolve(v)
	if err != nil {
		return storage.Mount{}, false, fmt.Errorf("locate: %w", err)
	}
	mp, err := b.getMapper(ctx)
	if errors.Is(err, mapper.ErrUnavailable) {
		return storage.Mount{}, false, nil
	}
	if err != nil {
		return storage.Mount{}, false, volErr("locate", v, err)
	}
	dev, err := mp.Device(ctx, vl.mapperImage())
	if err != nil {
		return storage.Mount{}, false, volErr("locate", v, err)
	}
	if dev == "" {
		return storage.Mount{}, false, nil
	}
	infos, err := fsutil.MountsOf([]string{dev}, vl.mount)
	if err != nil || len(infos) == 0 {
		return storage.Mount{}, false, err
	}
	return storage.Mount{Volume: id(v), Device: dev, Path: infos[0].Mountpoint}, true, nil
}
