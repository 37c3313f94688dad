package nfs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Locate finds where v's export is mounted for v: at its mount path, or at
// <any root>/<policy>/<name> (a mount made under an earlier mount root).
func (b *Backend) Locate(ctx context.Context, v storage.Volume) (storage.Mount, bool, error) {
	path, err := b.path(v)
	if err != nil {
		return storage.Mount{}, false, fmt.Errorf("locate: %w", err)
	}
	if m, err := fsutil.MountAt(path); err != nil || m != nil {
		if err != nil {
			return storage.Mount{}, false, volErr("locate", v, err)
		}
		return storage.Mount{Volume: id(v), Device: m.Source, Path: path}, true, nil
	}
	src := v.Options[OptSource]
	infos, err := fsutil.MountsOf([]string{src}, path)
	if err != nil {
		return storage.Mount{}, false, volErr("locate", v, err)
	}
	suffix := string(filepath.Separator) + filepath.Join(v.Policy, v.Name)
	for _, in := range infos {
		if strings.HasSuffix(in.Mountpoint, suffix) {
			return storage.Mount{Volume: id(v), Device: src, Path: in.Mountpoint}, true, nil
		}
	}
	return storage.Mount{}, false, nil
}
