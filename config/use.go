package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Use is a mount lock: it records which host holds a volume and for which
// Docker mount IDs. It lives under the host's etcd lease, so it disappears when
// the host stops renewing that lease.
//
// Holder names the daemon on that host (volplugin or volcsi, see
// HolderID): two daemons given one host label must not share a lock, or
// both would map and mount one image. A lock written before holders
// existed has none and belongs to whichever daemon of its host takes it
// next, which is what a restart after an upgrade needs.
type Use struct {
	Volume   VolumeRef `json:"volume"`
	Hostname string    `json:"hostname"`
	Holder   string    `json:"holder,omitempty"`
	Lease    int64     `json:"lease,omitzero"`
	MountIDs []string  `json:"mount-ids,omitempty"`
	Since    time.Time `json:"since,omitzero"`
}

// DecodeUse reads a stored mount lock: the one decoder of the record for
// the lock manager (lock/) that writes it and the store that lists it.
func DecodeUse(b []byte) (Use, error) {
	var u Use
	if err := json.Unmarshal(b, &u); err != nil {
		return Use{}, fmt.Errorf("stored mount lock is corrupt: %w", err)
	}
	return u, nil
}

// HeldBy tells whether the lock belongs to the daemon holder on host.
// A daemon that sends no holder (one older than holders) owns only locks
// that have none either.
func (u Use) HeldBy(host, holder string) bool {
	return u.Hostname == host && (u.Holder == "" || u.Holder == holder)
}

// Owner names the lock's holder for messages: the host, and the daemon on
// it when known.
func (u Use) Owner() string {
	if u.Holder == "" {
		return fmt.Sprintf("host %q", u.Hostname)
	}
	return fmt.Sprintf("host %q by %s", u.Hostname, u.Holder)
}

// HostLease is a volplugin host's etcd lease: every mount lock of the host
// hangs on it, so keep-alive traffic is per host, not per volume.
type HostLease struct {
	Host   string    `json:"host"`
	Holder string    `json:"holder,omitempty"`
	ID     int64     `json:"id"`
	TTL    int64     `json:"ttl"`
	Since  time.Time `json:"since,omitzero"`
}

// MountRequest asks for (or releases) one Docker mount of a volume by a host.
type MountRequest struct {
	Hostname string `json:"hostname"`
	// Holder is the daemon asking (see Use); empty from older daemons.
	Holder  string `json:"holder,omitempty"`
	Lease   int64  `json:"lease"`
	MountID string `json:"mount-id"`
}

// Usage records when a volume was last mounted and unmounted on any host,
// for ephemeral-volume removal and reclamation. A volume never mounted has
// none.
type Usage struct {
	LastMounted   time.Time `json:"last-mounted,omitzero"`
	LastUnmounted time.Time `json:"last-unmounted,omitzero"`
	Host          string    `json:"host,omitempty"`
}

// DecodeUsage reads a stored usage record (see DecodeUse).
func DecodeUsage(b []byte) (Usage, error) {
	var u Usage
	if err := json.Unmarshal(b, &u); err != nil {
		return Usage{}, fmt.Errorf("stored usage record is corrupt: %w", err)
	}
	return u, nil
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

// HolderID names one daemon instance for the locks it takes: its plugin
// name and a digest of its state directory. One process at a time can hold
// that pair (the daemon flocks it), and a restart finds the same pair, so
// the ID tells a relock after a restart (the same daemon, a new lease) from
// a second daemon given the same host label. It needs no file of its own to
// survive: moving a corrupt state file aside keeps it.
func HolderID(plugin, stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	if len(plugin) > MaxNameLength-9 {
		plugin = plugin[:MaxNameLength-9]
	}
	return plugin + "." + hex.EncodeToString(sum[:4])
}

// ValidateHolder checks a holder ID from a request; empty is allowed (a
// daemon older than holders).
func ValidateHolder(holder string) error {
	if holder == "" {
		return nil
	}
	return ValidateName("holder", holder)
}
