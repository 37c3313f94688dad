package config

import "time"

// Use is a mount lock: it records which host holds a volume and for which
// Docker mount IDs. It lives under the host's etcd lease, so it disappears when
// the host stops renewing that lease.
type Use struct {
	Volume   VolumeRef `json:"volume"`
	Hostname string    `json:"hostname"`
	Lease    int64     `json:"lease,omitzero"`
	MountIDs []string  `json:"mount-ids,omitempty"`
	Since    time.Time `json:"since,omitzero"`
}
