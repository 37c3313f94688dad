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

// Reclaimable is a volume unused for longer than its policy's
// reclaim.unused-for.
type Reclaimable struct {
	Volume     VolumeRef `json:"volume"`
	LastUsed   time.Time `json:"last-used"`
	UnusedFor  Duration  `json:"unused-for"`
	WillRemove bool      `json:"will-remove"`
}

// FindReclaimable returns the volumes that are not mounted anywhere (not in
// locked) and have been unused for at least their reclaim.unused-for.
func FindReclaimable(vols []Volume, usage map[VolumeRef]Usage, locked map[VolumeRef]bool, now time.Time) []Reclaimable {
	var out []Reclaimable
	for i := range vols {
		v := &vols[i]
		ref := v.Ref()
		if v.Reclaim.UnusedFor <= 0 || locked[ref] {
			continue
		}
		last := usage[ref].LastUsed(v.CreatedAt)
		if unused := now.Sub(last); unused >= v.Reclaim.UnusedFor.D() {
			out = append(out, Reclaimable{Volume: ref, LastUsed: last, UnusedFor: Duration(unused.Truncate(time.Second)), WillRemove: v.Reclaim.Enabled})
		}
	}
	return out
}
