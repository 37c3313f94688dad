package ceph

import "time"

// host holds the timeout of the filesystem tools run on a mapped device
// (blkid, mkfs, mount, growfs, fsfreeze: storage/internal/fsutil).
type host struct {
	timeout time.Duration
}
