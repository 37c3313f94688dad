// Package backend opens the storage backends the control-plane daemons
// (volmaster, volsupervisor) create, snapshot and remove images with, from
// their command-line settings: the same set in both.
package backend

import (
	"fmt"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// Options say where the backends keep their data.
type Options struct {
	// LocalDataDir holds the local backend's images.
	LocalDataDir string
	// MountRoot is where this host mounts volumes.
	MountRoot string
	// CephConf, if set, enables the Ceph backend (--ceph-conf).
	CephConf string
}

// Set is the opened backends, by backend name.
type Set struct {
	CRUD         map[string]storage.CRUD
	Snapshotters map[string]storage.Snapshotter
	// Local is the local backend (also in the maps), for what only it has:
	// its data directory's identity.
	Local *local.Backend
	ceph  *ceph.Backend
}

// Open opens the local backend, and the Ceph backend when CephConf is set.
// Close releases them.
func Open(o Options) (*Set, error) {
	lb, err := local.New(local.Config{DataDir: o.LocalDataDir, MountRoot: o.MountRoot})
	if err != nil {
		return nil, err
	}
	s := &Set{
		Local:        lb,
		CRUD:         map[string]storage.CRUD{config.BackendLocal: lb},
		Snapshotters: map[string]storage.Snapshotter{config.BackendLocal: lb},
	}
	if o.CephConf != "" {
		cb, err := ceph.New(ceph.Config{Conf: o.CephConf, MountRoot: o.MountRoot})
		if err != nil {
			return nil, fmt.Errorf("--ceph-conf: %w", err)
		}
		s.ceph = cb
		s.CRUD[config.BackendCeph], s.Snapshotters[config.BackendCeph] = cb, cb
	}
	return s, nil
}

// Close releases the backends' connections (Ceph's cluster handle).
func (s *Set) Close() error {
	if s.ceph != nil {
		return s.ceph.Close()
	}
	return nil
}
