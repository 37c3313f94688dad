// Package iolimit applies a volume's I/O rate limits (bytes and operations
// per second, read and write) to the cgroups of the containers that use the
// volume's block device.
//
// How it works: the volume's device number (MAJ:MIN) is taken from its
// block device node. A scan walks /proc, reads /proc/<pid>/mountinfo once per
// mount namespace and, when that namespace has a mount of the device (a
// container's bind mount of the volume shows the same MAJ:MIN), reads
// /proc/<pid>/cgroup of every process in that namespace to find its blkio
// cgroup (cgroup v1) or unified cgroup (cgroup v2). The root cgroup and the
// daemon's own cgroup are skipped. The limits are then written to each cgroup:
// blkio.throttle.{read,write}_{bps,iops}_device on v1 and io.max on v2.
//
// Because Docker calls the plugin's Mount before the container (and its
// cgroup) exists, the Manager re-scans periodically (Manager.Run) so that a
// container started after Mount gets its limit within one period.
//
// Caveats:
//   - The limit is per container (per cgroup), not per volume: two containers
//     that use one volume each get the full limit.
//   - On cgroup v1, buffered writes that are flushed later by writeback (or by
//     sync(2)) are charged to the root cgroup, not to the container, so only
//     direct (O_DIRECT) I/O and writes the container fsyncs itself, plus
//     reads, are throttled.
//   - Processes in the daemon's own mount namespace that sit in a non-root
//     cgroup also get the limit for the device (harmless: it only affects I/O
//     to that device). Options.Include can narrow the set.
package iolimit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Limits are rates for one volume; 0 means unlimited.
type Limits struct {
	ReadBPS, WriteBPS, ReadIOPS, WriteIOPS uint64
}

// IsZero reports whether l sets no limit at all.
func (l Limits) IsZero() bool { return l == Limits{} }

// Device is a block device number.
type Device struct{ Major, Minor uint32 }

func (d Device) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// DeviceNumber returns the major and minor number of the block device at devPath.
func DeviceNumber(devPath string) (major, minor uint32, err error) {
	var st unix.Stat_t
	if err := unix.Stat(devPath, &st); err != nil {
		return 0, 0, fmt.Errorf("iolimit: stat %s: %w", devPath, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("iolimit: %s is not a block device", devPath)
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), nil
}

// Cgroup is a cgroup directory found by discovery.
type Cgroup struct {
	Dir string // absolute path of the cgroup directory
	V2  bool   // true: cgroup v2 (io.max); false: cgroup v1 blkio
}

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

// v1 throttle files, in Limits field order.
var v1Files = [4]string{
	"blkio.throttle.read_bps_device",
	"blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device",
	"blkio.throttle.write_iops_device",
}

// Apply writes l for device d to cgroup cg. Files already holding the wanted
// value are not rewritten (a write restarts the kernel's throttle slice).
func Apply(cg Cgroup, d Device, l Limits) error {
	if cg.V2 {
		return applyV2(cg.Dir, d, l)
	}
	vals := [4]uint64{l.ReadBPS, l.WriteBPS, l.ReadIOPS, l.WriteIOPS}
	var errs []error
	for i, name := range v1Files {
		file := filepath.Join(cg.Dir, name)
		cur, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("iolimit: read %s: %w", file, err))
			continue
		}
		if v1Value(cur, d) == vals[i] {
			continue
		}
		if err := writeFile(file, fmt.Sprintf("%s %d", d, vals[i])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// v1Value returns the value for d in a blkio.throttle.*_device file; 0 if absent.
func v1Value(content []byte, d Device) uint64 {
	prefix := d.String() + " "
	for _, line := range strings.Split(string(content), "\n") {
		if r, ok := strings.CutPrefix(line, prefix); ok {
			v, _ := strconv.ParseUint(strings.TrimSpace(r), 10, 64)
			return v
		}
	}
	return 0
}

// IOMaxLine returns the io.max line for d and l ("max" for 0).
func IOMaxLine(d Device, l Limits) string {
	f := func(v uint64) string {
		if v == 0 {
			return "max"
		}
		return strconv.FormatUint(v, 10)
	}
	return fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s",
		d, f(l.ReadBPS), f(l.WriteBPS), f(l.ReadIOPS), f(l.WriteIOPS))
}

func applyV2(dir string, d Device, l Limits) error {
	file := filepath.Join(dir, "io.max")
	cur, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("iolimit: read %s: %w", file, err)
	}
	line := IOMaxLine(d, l)
	prefix := d.String() + " "
	found := false
	for _, c := range strings.Split(string(cur), "\n") {
		if strings.HasPrefix(c, prefix) {
			found = true
			if strings.Join(strings.Fields(c), " ") == line {
				return nil
			}
		}
	}
	if !found && l.IsZero() {
		return nil // no entry means unlimited
	}
	return writeFile(file, line)
}

// writeFile writes s to an existing (cgroup) file without creating it.
func writeFile(file, s string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	return nil
}
