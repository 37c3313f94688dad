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

// LastUsed is when the volume was last in use as far as etcd knows: its
// last unmount, its last mount (a host that died never unmounted), or its
// creation if it was never mounted.
func (u Usage) LastUsed(created time.Time) time.Time {
	last := created
	for _, t := range []time.Time{u.LastMounted, u.LastUnmounted} {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// Unrecorded reports whether the last mount has no recorded unmount (its
// host died, lost its lease or was cut off before releasing it).
func (u Usage) Unrecorded() bool { return u.LastUnmounted.Before(u.LastMounted) }

// Mounted records a new mount lock of host taken at t. The mount is placed
// after any recorded unmount even if t is not (two volmasters' clocks may
// disagree), so a mount is never mistaken for an unmounted volume.
func (u *Usage) Mounted(host string, t time.Time) {
	if !t.After(u.LastUnmounted) {
		t = u.LastUnmounted.Add(time.Microsecond)
	}
	u.LastMounted, u.Host = t, host
}

// Unmounted records the unmount of the last mount at t (never before that
// mount); host, if given, replaces the recorded host.
func (u *Usage) Unmounted(host string, t time.Time) {
	if t.Before(u.LastMounted) {
		t = u.LastMounted
	}
	u.LastUnmounted = t
	if host != "" {
		u.Host = host
	}
}
