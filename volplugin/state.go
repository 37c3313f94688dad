package volplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/volplugin/volplugin/config"
)

// DefaultStateDir holds each plugin's state file.
const DefaultStateDir = "/var/lib/volplugin/state"

// hostState is what this host knows that must survive a restart of
// volplugin, and must not depend on volmaster being reachable at start:
// every volume mounted here with its exact Docker mount IDs (the lock in etcd
// may have expired meanwhile), releases volmaster has not acknowledged yet,
// and the last global configuration seen (for the mount root and timeouts).
// It is written before a Mount or Unmount answers Docker.
type hostState struct {
	Global   *config.Global   `json:"global,omitempty"`
	Mounts   []stateMount     `json:"mounts"`
	Releases []pendingRelease `json:"releases,omitempty"`
}

// stateMount is one volume mounted on this host.
type stateMount struct {
	Volume config.Volume `json:"volume"`
	Path   string        `json:"path"`
	Device string        `json:"device"`
	IDs    []string      `json:"mount-ids"`
}

// pendingRelease is one mount ID whose release volmaster has not
// acknowledged: it is retried until it succeeds.
type pendingRelease struct {
	Volume  config.VolumeRef `json:"volume"`
	MountID string           `json:"mount-id"`
}

// stateFile writes hostState atomically: a crash leaves the old or the new
// file, never a torn one.
type stateFile struct {
	path string
	// mu orders writers (see Driver.persist).
	mu sync.Mutex
}

func newStateFile(dir, plugin string) (*stateFile, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("--state-dir %q must be an absolute path: %w", dir, config.ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	return &stateFile{path: filepath.Join(dir, plugin+".state.json")}, nil
}

// load returns the saved state; a missing file is an empty state.
func (f *stateFile) load() (hostState, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return hostState{}, nil
	}
	if err != nil {
		return hostState{}, fmt.Errorf("read state %s: %w", f.path, err)
	}
	var st hostState
	if err := json.Unmarshal(b, &st); err != nil {
		return hostState{}, fmt.Errorf("state %s is corrupt (move it aside to start without it): %w", f.path, err)
	}
	return st, nil
}

// save replaces the file with st, durably. The caller holds f.mu.
func (f *stateFile) save(st hostState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = w.Write(b)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state %s: %w", f.path, err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// snapshotState builds the state to save from the driver's current view.
// The caller holds d.mu.
func (d *Driver) snapshotStateLocked() hostState {
	st := hostState{Mounts: make([]stateMount, 0, len(d.mounts)), Releases: slices.Clone(d.releases)}
	if d.global != nil {
		g := *d.global
		st.Global = &g
	}
	for _, m := range d.mounts {
		ids := make([]string, 0, len(m.ids))
		for id := range m.ids {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		st.Mounts = append(st.Mounts, stateMount{Volume: m.vol, Path: m.path, Device: m.device, IDs: ids})
	}
	slices.SortFunc(st.Mounts, func(a, b stateMount) int {
		return strings.Compare(a.Volume.Ref().String(), b.Volume.Ref().String())
	})
	return st
}

// persist saves the driver's state; without a state file (tests of other
// parts) it does nothing.
func (d *Driver) persist() error {
	if d.state == nil {
		return nil
	}
	// One writer at a time, each saving what it read under that lock, so
	// an older view never overwrites a newer one.
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	d.mu.Lock()
	st := d.snapshotStateLocked()
	d.mu.Unlock()
	return d.state.save(st)
}
