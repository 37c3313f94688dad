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

// HostLease is a volplugin host's etcd lease: every mount lock of the host
// hangs on it, so keep-alive traffic is per host, not per volume.
type HostLease struct {
	Host  string    `json:"host"`
	ID    int64     `json:"id"`
	TTL   int64     `json:"ttl"`
	Since time.Time `json:"since,omitzero"`
}

// MountRequest asks for (or releases) one Docker mount of a volume by a host.
type MountRequest struct {
	Hostname string `json:"hostname"`
	Lease    int64  `json:"lease"`
	MountID  string `json:"mount-id"`
}

// Usage records when a volume was last mounted and unmounted on any host,
// for ephemeral-volume removal and reclamation. A volume never mounted has
// none.
type Usage struct {
	LastMounted   time.Time `json:"last-mounted,omitzero"`
	LastUnmounted time.Time `json:"last-unmounted,omitzero"`
	Host          string    `json:"host,omitempty"`
}
