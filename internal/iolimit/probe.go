package iolimit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Support is what the host's cgroups offer for I/O limits.
type Support struct {
	// BlkioRoot is the cgroup v1 blkio hierarchy ("" if none is mounted);
	// Throttle tells whether it has the throttle files the limits go to.
	BlkioRoot string
	Throttle  bool
	// Cgroup2Root is the cgroup v2 hierarchy ("" if none is mounted); IO
	// tells whether its io controller is available (io.max).
	Cgroup2Root string
	IO          bool
}

// Usable reports whether a Manager can apply limits here at all.
func (s Support) Usable() bool { return s.Throttle || s.IO }

// Probe finds the cgroup hierarchies as a Manager with opts would, and
// reports what they offer. It changes nothing.
func Probe(opts Options) (Support, error) {
	m := NewManager(opts)
	if err := m.initRoots(); err != nil {
		return Support{}, err
	}
	s := Support{BlkioRoot: m.blkio.dir, Cgroup2Root: m.cg2.dir}
	if s.BlkioRoot != "" {
		_, err := os.Stat(filepath.Join(s.BlkioRoot, v1Files[0]))
		s.Throttle = err == nil
	}
	if s.Cgroup2Root != "" {
		b, err := os.ReadFile(filepath.Join(s.Cgroup2Root, "cgroup.controllers"))
		s.IO = err == nil && slices.Contains(strings.Fields(string(b)), "io")
	}
	return s, nil
}
