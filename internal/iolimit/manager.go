package iolimit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"
)

// Options configure a Manager. The zero value uses the host's /proc and
// the cgroup mounts listed in /proc/self/mountinfo.
type Options struct {
	// ProcRoot is the proc filesystem; default "/proc".
	ProcRoot string
	// BlkioRoot is the mount point of the cgroup v1 blkio hierarchy. Empty:
	// found in <ProcRoot>/self/mountinfo (none found: v1 is not used).
	BlkioRoot string
	// Cgroup2Root is the mount point of the cgroup v2 hierarchy. Empty: found
	// in <ProcRoot>/self/mountinfo (none found: v2 is not used).
	Cgroup2Root string
	// Include, if set, is asked about every discovered cgroup path (as in
	// /proc/<pid>/cgroup, e.g. "/docker/<id>"); false skips it.
	Include func(cgroupPath string) bool
	// Logf receives errors from periodic scans; default: discarded.
	Logf func(format string, args ...any)
	// DeviceNumber resolves a device path; default: the package's DeviceNumber.
	DeviceNumber func(devPath string) (major, minor uint32, err error)
}

type volume struct {
	dev     string
	limits  Limits
	devNum  Device   // last resolved device number
	hasDev  bool     // devNum is valid
	applied []Cgroup // cgroups limited by the last scan
	err     error
}

// Manager applies the limits of registered volumes to the cgroups using them.
// It keeps no package-level state; all methods are safe for concurrent use
// and scans are serialised.
type Manager struct {
	opts Options

	scanMu sync.Mutex // serialises scans, Set and Remove

	mu      sync.Mutex // guards vols
	vols    map[string]*volume
	rootsOK bool
	blkio   mountRoot
	cg2     mountRoot
}

type mountRoot struct {
	dir  string // mount point
	root string // root of the mount inside the hierarchy
}

// NewManager returns a Manager; nothing is scanned until Set or Run.
func NewManager(opts Options) *Manager {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.DeviceNumber == nil {
		opts.DeviceNumber = DeviceNumber
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	return &Manager{opts: opts, vols: map[string]*volume{}}
}

// Set registers or updates the limits of the volume key ("policy/name") whose
// block device is dev, and applies them at once to the cgroups using it.
// The returned error (which may be ignored: Run retries) reports failures of
// this application.
func (m *Manager) Set(key, dev string, l Limits) error {
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	m.mu.Lock()
	v, ok := m.vols[key]
	if !ok {
		v = &volume{}
		m.vols[key] = v
	}
	v.dev, v.limits = dev, l
	m.mu.Unlock()
	if err := m.scanLocked(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return v.err
}

// Remove forgets the volume key and clears its limits (writes 0 / "max") in
// the cgroups it was applied to that still exist.
func (m *Manager) Remove(key string) error {
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	m.mu.Lock()
	v, ok := m.vols[key]
	delete(m.vols, key)
	if !ok || !v.hasDev || len(v.applied) == 0 {
		m.mu.Unlock()
		return nil
	}
	d := v.devNum
	// Another registered volume on the same device keeps its limits (the
	// next scan applies them).
	for _, o := range m.vols {
		if o.hasDev && o.devNum == d {
			m.mu.Unlock()
			return nil
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, cg := range v.applied {
		if err := Apply(cg, d, Limits{}); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("volume %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// Status returns the cgroup directories the last scan limited for key, sorted.
func (m *Manager) Status(key string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vols[key]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(v.applied))
	for _, cg := range v.applied {
		out = append(out, cg.Dir)
	}
	return out
}

// Rescan discovers the cgroups using every registered volume and applies
// the limits now.
func (m *Manager) Rescan() error {
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	return m.scanLocked()
}

// Run re-scans every period (default 5s) until ctx is done, so containers
// started after Set get their limits within one period.
func (m *Manager) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Rescan(); err != nil {
				m.opts.Logf("iolimit: rescan: %v", err)
			}
		}
	}
}

// scanLocked runs one scan; the caller holds scanMu.
func (m *Manager) scanLocked() error {
	if err := m.initRoots(); err != nil {
		return err
	}
	m.mu.Lock()
	keys := make([]string, 0, len(m.vols))
	devs := map[string]string{}
	lims := map[string]Limits{}
	for k, v := range m.vols {
		keys = append(keys, k)
		devs[k], lims[k] = v.dev, v.limits
	}
	m.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)

	devOf := map[string]Device{}
	keyErr := map[string]error{}
	want := map[Device]bool{}
	for _, k := range keys {
		maj, min, err := m.opts.DeviceNumber(devs[k])
		if err != nil {
			keyErr[k] = fmt.Errorf("volume %s: %w", k, err)
			continue
		}
		d := Device{maj, min}
		devOf[k] = d
		want[d] = true
	}
	var errs []error
	found := map[Device][]Cgroup{}
	if len(want) > 0 {
		var err error
		found, err = m.discover(want)
		if err != nil {
			errs = append(errs, err)
		}
	}
	applied := map[string][]Cgroup{}
	for _, k := range keys {
		d, ok := devOf[k]
		if !ok {
			continue
		}
		var kerrs []error
		for _, cg := range found[d] {
			if err := Apply(cg, d, lims[k]); err != nil {
				if !errors.Is(err, fs.ErrNotExist) { // cgroup gone: container exited
					kerrs = append(kerrs, fmt.Errorf("volume %s: %w", k, err))
				}
				continue
			}
			applied[k] = append(applied[k], cg)
		}
		keyErr[k] = errors.Join(kerrs...)
	}

	m.mu.Lock()
	for _, k := range keys {
		v, ok := m.vols[k]
		if !ok || v.dev != devs[k] || v.limits != lims[k] {
			continue // changed meanwhile (not possible under scanMu, but be safe)
		}
		if d, ok := devOf[k]; ok {
			v.devNum, v.hasDev = d, true
		}
		v.applied = applied[k]
		v.err = keyErr[k]
		if keyErr[k] != nil {
			errs = append(errs, keyErr[k])
		}
	}
	m.mu.Unlock()
	return errors.Join(errs...)
}
