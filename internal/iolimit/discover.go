package iolimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// initRoots finds the cgroup mount points once.
func (m *Manager) initRoots() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rootsOK {
		return nil
	}
	m.blkio = mountRoot{dir: m.opts.BlkioRoot, root: "/"}
	m.cg2 = mountRoot{dir: m.opts.Cgroup2Root, root: "/"}
	if m.blkio.dir == "" || m.cg2.dir == "" {
		f, err := os.Open(filepath.Join(m.opts.ProcRoot, "self", "mountinfo"))
		if err != nil {
			return fmt.Errorf("iolimit: find cgroup mounts: %w", err)
		}
		mounts, err := mountinfo.GetMountsFromReader(f, func(i *mountinfo.Info) (bool, bool) {
			return i.FSType != "cgroup" && i.FSType != "cgroup2", false
		})
		f.Close()
		if err != nil {
			return fmt.Errorf("iolimit: parse %s/self/mountinfo: %w", m.opts.ProcRoot, err)
		}
		for _, mi := range mounts {
			switch {
			case mi.FSType == "cgroup" && m.blkio.dir == "" && hasOpt(mi.VFSOptions, "blkio"):
				m.blkio = mountRoot{dir: mi.Mountpoint, root: mi.Root}
			case mi.FSType == "cgroup2" && m.cg2.dir == "":
				m.cg2 = mountRoot{dir: mi.Mountpoint, root: mi.Root}
			}
		}
	}
	if m.blkio.dir == "" && m.cg2.dir == "" {
		return errors.New("iolimit: no blkio (v1) or cgroup2 hierarchy mounted")
	}
	m.rootsOK = true
	return nil
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// Discover returns, for each device in want, the cgroups of processes whose
// mount namespace has a mount of that device.
func (m *Manager) Discover(want map[Device]bool) (map[Device][]Cgroup, error) {
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	if err := m.initRoots(); err != nil {
		return nil, err
	}
	return m.discover(want)
}

func (m *Manager) discover(want map[Device]bool) (map[Device][]Cgroup, error) {
	proc := m.opts.ProcRoot
	wantStr := make(map[string]Device, len(want))
	for d := range want {
		wantStr[d.String()] = d
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("iolimit: read %s: %w", proc, err)
	}
	self, _ := m.cgroupOf(filepath.Join(proc, "self"))

	nsDevs := map[string][]Device{} // mount ns -> wanted devices mounted in it
	seen := map[Device]map[string]bool{}
	out := map[Device][]Cgroup{}
	for _, e := range ents {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		if _, err := strconv.Atoi(name); err != nil {
			continue
		}
		pdir := filepath.Join(proc, name)
		ns, err := os.Readlink(filepath.Join(pdir, "ns", "mnt"))
		if err != nil {
			continue // process gone or not accessible
		}
		devs, ok := nsDevs[ns]
		if !ok {
			devs = mountedDevices(filepath.Join(pdir, "mountinfo"), wantStr)
			nsDevs[ns] = devs
		}
		if len(devs) == 0 {
			continue
		}
		cg, ok := m.cgroupOf(pdir)
		if !ok || cg == self {
			continue
		}
		for _, d := range devs {
			if seen[d] == nil {
				seen[d] = map[string]bool{}
			}
			if !seen[d][cg.Dir] {
				seen[d][cg.Dir] = true
				out[d] = append(out[d], cg)
			}
		}
	}
	for _, cgs := range out {
		sort.Slice(cgs, func(i, j int) bool { return cgs[i].Dir < cgs[j].Dir })
	}
	return out, nil
}

// mountedDevices reads a mountinfo file and returns the wanted devices that
// appear in its MAJ:MIN field (field 3). Errors (process gone) give nil.
func mountedDevices(file string, want map[string]Device) []Device {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Device
	got := map[Device]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		// "36 35 98:0 /mnt1 /mnt2 ..." -> third field
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			continue
		}
		line = line[i+1:]
		if i = bytes.IndexByte(line, ' '); i < 0 {
			continue
		}
		line = line[i+1:]
		if i = bytes.IndexByte(line, ' '); i < 0 {
			continue
		}
		if d, ok := want[string(line[:i])]; ok && !got[d] {
			got[d] = true
			out = append(out, d)
			if len(out) == len(want) {
				break
			}
		}
	}
	return out
}

// cgroupOf reads <pdir>/cgroup and returns the process's blkio (v1) or
// unified (v2) cgroup; ok is false for the root cgroup, excluded paths and
// errors.
func (m *Manager) cgroupOf(pdir string) (Cgroup, bool) {
	b, err := os.ReadFile(filepath.Join(pdir, "cgroup"))
	if err != nil {
		return Cgroup{}, false
	}
	var v1, v2 string
	for _, line := range strings.Split(string(b), "\n") {
		// "hierarchy-ID:controller-list:cgroup-path"
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		} else if hasOpt(parts[1], "blkio") {
			v1 = parts[2]
		}
	}
	var p string
	var mr mountRoot
	isV2 := false
	switch {
	case v1 != "" && m.blkio.dir != "":
		p, mr = v1, m.blkio
	case v2 != "" && m.cg2.dir != "":
		p, mr, isV2 = v2, m.cg2, true
	default:
		return Cgroup{}, false
	}
	p = path.Clean(p)
	if p == "/" || strings.HasSuffix(p, " (deleted)") {
		return Cgroup{}, false
	}
	if m.opts.Include != nil && !m.opts.Include(p) {
		return Cgroup{}, false
	}
	rel := p
	if mr.root != "" && mr.root != "/" {
		// The hierarchy is mounted from a sub-directory (e.g. inside a
		// container): paths are relative to it when they lie under it.
		if r := strings.TrimPrefix(p, mr.root); r != p && (r == "" || r[0] == '/') {
			rel = r
		}
	}
	return Cgroup{Dir: filepath.Join(mr.dir, rel), V2: isV2}, true
}
