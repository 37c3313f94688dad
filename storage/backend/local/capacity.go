package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/storage"
)

var _ storage.CapacityReporter = (*Backend)(nil)

// StorePrefix starts the Store of a local data dir's Capacity; its
// identity (StoreID) follows.
const StorePrefix = "local:"

// storeIDFile holds a data dir's identity: a random name that is the same
// for every host that sees this directory (the volmaster's host, or hosts
// sharing it), and differs for another directory of the same path.
const storeIDFile = "store-id"

// Capacity is the free space of the filesystem holding the data dir: what
// an unprivileged writer may still use there (statfs f_bavail). Its Store
// is StorePrefix and the data dir's identity, made on first use.
func (b *Backend) Capacity(ctx context.Context, _ storage.Volume) (storage.Capacity, error) {
	if err := ctx.Err(); err != nil {
		return storage.Capacity{}, err
	}
	id, err := b.StoreID()
	if err != nil {
		return storage.Capacity{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(b.dataDir, &st); err != nil {
		return storage.Capacity{}, fmt.Errorf("free space of %s: %w", b.dataDir, err)
	}
	return storage.Capacity{Store: StorePrefix + id, Available: int64(st.Bavail) * st.Bsize}, nil
}

// StoreID returns the data dir's identity, making the data dir and the
// identity if they are not there yet (volmaster does at start, so that
// nodes on its host find it).
func (b *Backend) StoreID() (string, error) {
	if id, err := ReadStoreID(b.dataDir); err != nil || id != "" {
		return id, err
	}
	if err := os.MkdirAll(b.dataDir, 0o700); err != nil {
		return "", err
	}
	rnd := make([]byte, 16)
	if _, err := rand.Read(rnd); err != nil {
		return "", err
	}
	// Written aside and linked into place: a concurrent first use keeps
	// the identity the other made, and nobody reads half a file.
	tmp, err := os.CreateTemp(b.dataDir, ".store-id-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(rnd) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), filepath.Join(b.dataDir, storeIDFile))
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("identity of data dir %s: %w", b.dataDir, err)
	}
	return ReadStoreID(b.dataDir)
}

// ReadStoreID reads the identity of the data dir dir (see StoreID); "" when
// it has none.
func ReadStoreID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, storeIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("identity of data dir %s: %w", dir, err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return "", fmt.Errorf("identity of data dir %s: %q is not 32 hex digits", dir, id)
	}
	return id, nil
}
