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
	"fmt"

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
