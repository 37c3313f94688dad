package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/storage"
)

var _ storage.CapacityReporter = (*Backend)(nil)

// Capacity is the free space of the filesystem holding the data dir (of
// its nearest existing parent before the first image makes it): what an
// unprivileged writer may still use there (statfs f_bavail).
func (b *Backend) Capacity(ctx context.Context, _ storage.Volume) (storage.Capacity, error) {
	if err := ctx.Err(); err != nil {
		return storage.Capacity{}, err
	}
	dir := b.dataDir
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return storage.Capacity{Store: "local:" + b.dataDir, Available: int64(st.Bavail) * st.Bsize}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || dir == "/" {
			return storage.Capacity{}, fmt.Errorf("free space of %s: %w", dir, err)
		}
		dir = filepath.Dir(dir)
	}
}
