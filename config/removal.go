package config

import (
	"fmt"
	"time"
)

// A volume is in use until proven unmounted. This file holds the one rule
// that decides when a volume may be removed, used by volsupervisor (ephemeral
// removal and reclamation), by volmaster (the reclaim list, and a user's
// remove) and by internal/volops (which checks it again just before the
// removal, against what etcd holds then).

// MountState is what etcd proves about whether a volume is mounted.
type MountState string

// Mount states.
const (
	// StateMounted: a mount lock exists.
	StateMounted MountState = "mounted"
	// StateNeverMounted: no mount lock and no usage record: never mounted.
	StateNeverMounted MountState = "never-mounted"
	// StateUnmounted: no mount lock, and the last mount has a recorded
	// unmount (its last container stopped, or an operator recorded it).
	StateUnmounted MountState = "unmounted"
	// StateUnproven: no mount lock, but the last mount has no recorded
	// unmount: its host died, lost its lease or was cut off, and may still
	// have it mounted. Nothing removes it until an operator records the
	// unmount (volcli use force-remove).
	StateUnproven MountState = "in-use-until-proven-unmounted"
	// StateUnlocked: the volume's mounts take no lock and leave no usage
	// record, so nothing is known.
	StateUnlocked MountState = "unlocked"
)

// RemovalGrace is how long a volume must have been without any mount lock
// after its last recorded unmount before it is removed automatically: twice
// the lease TTL (seconds). A host that still has the volume mounted after an
// operator recorded the unmount takes its lock again within one TTL of
// reaching volmaster.
func RemovalGrace(ttl int64) time.Duration { return 2 * time.Duration(ttl) * time.Second }

// Verdict is the removal rule's answer for one volume.
type Verdict struct {
	State MountState
	// Host last mounted (or unmounted) the volume, from its usage record.
	Host        string
	LastMounted time.Time
	// LastUsed is the last unmount, the last mount (unproven) or the
	// creation (never mounted).
	LastUsed time.Time
	// NotBefore is when the grace ends (unmounted only).
	NotBefore time.Time
	// Ready: never mounted, or unmounted with the grace over.
	Ready bool
	// Ephemeral: an ephemeral volume that was mounted and whose last mount
	// has a recorded unmount (one never mounted yet is kept).
	Ephemeral bool
	// Reclaimable: unused for at least its policy's reclaim.unused-for.
	Reclaimable bool
	// Remove: volsupervisor removes it now (Ready, and Ephemeral or
	// Reclaimable with reclaim.enabled).
	Remove bool
	// Reason says why the volume is not Ready ("" if it is).
	Reason string
}

// Decide applies the rule "in use until proven unmounted" to volume v, its
// usage record u (nil if it has none), whether a mount lock exists, the
// grace (RemovalGrace of the global TTL) and the time. A volume may be
// removed automatically only if (a) no mount lock exists, (b) it was never
// mounted (and is not unlocked) or its last mount has a recorded unmount,
// and (c) after an unmount, the grace has passed since. (A volume never
// mounted needs no grace: a mount lock and its usage record are written in
// one transaction, so no host has ever locked it.) A user's remove needs (a)
// and (b) only (Verdict.RemoveError).
func Decide(v *Volume, u *Usage, locked bool, grace time.Duration, now time.Time) Verdict {
	ref := v.Ref()
	vd := Verdict{LastUsed: v.CreatedAt}
	if u != nil {
		vd.Host, vd.LastMounted, vd.LastUsed = u.Host, u.LastMounted, u.LastUsed(v.CreatedAt)
	}
	if v.RestoredAt.After(vd.LastUsed) {
		vd.LastUsed = v.RestoredAt
	}
	switch {
	case locked:
		vd.State, vd.Reason = StateMounted, "mounted (it has a mount lock)"
	case v.Unlocked:
		vd.State, vd.Reason = StateUnlocked, "unlocked: its mounts take no lock, so nothing proves it unused"
	case u == nil || u.LastMounted.IsZero():
		vd.State = StateNeverMounted
	case u.Unrecorded():
		vd.State = StateUnproven
		vd.Reason = fmt.Sprintf("in use until proven unmounted: last mounted on host %q at %s with no recorded unmount "+
			"(the host died, lost its lease or was cut off); once %q no longer has it mounted, run `volcli use force-remove %s`",
			u.Host, u.LastMounted.UTC().Format(time.RFC3339), u.Host, ref)
	default:
		vd.State = StateUnmounted
	}
	switch vd.State {
	case StateNeverMounted:
		vd.Ready = true
	case StateUnmounted:
		vd.NotBefore = u.LastUnmounted.Add(grace)
		vd.Ready = !now.Before(vd.NotBefore)
		if !vd.Ready {
			vd.Reason = fmt.Sprintf("waiting for %s without a mount lock since the unmount at %s (twice the lease TTL), until %s",
				grace, u.LastUnmounted.UTC().Format(time.RFC3339), vd.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	vd.Ephemeral = v.Ephemeral && vd.State == StateUnmounted
	vd.Reclaimable = v.Reclaim.UnusedFor > 0 && now.Sub(vd.LastUsed) >= v.Reclaim.UnusedFor.D()
	// A protected volume is never removed automatically.
	vd.Remove = vd.Ready && !v.Protect && (vd.Ephemeral || vd.Reclaimable && v.Reclaim.Enabled)
	return vd
}

// RemoveError is nil if a user's remove of the volume may go ahead: no
// mount lock, and never mounted or its last mount has a recorded unmount
// (no grace: "docker run --rm ...; docker volume rm" is routine). Otherwise
// it is ErrInUse naming the host and the command that clears it.
func (vd Verdict) RemoveError(ref VolumeRef) error {
	switch vd.State {
	case StateMounted, StateUnproven:
		return fmt.Errorf("volume %s is %s: %w", ref, vd.Reason, ErrInUse)
	}
	return nil
}

// Reclaimable is one entry of the reclaim list (GET /v1/reclaimable,
// volcli volume reclaim --dry-run): a volume unused for longer than its
// policy's reclaim.unused-for, or an ephemeral volume kept because it is in
// use until proven unmounted.
type Reclaimable struct {
	Volume    VolumeRef `json:"volume"`
	LastUsed  time.Time `json:"last-used"`
	UnusedFor Duration  `json:"unused-for"`
	// WillRemove: volsupervisor removes it by itself once Ready
	// (reclaim.enabled, or ephemeral; never while unproven or unlocked).
	WillRemove bool `json:"will-remove"`
	// Ready: it may be removed now (volcli volume reclaim removes it):
	// never mounted, or unmounted and the grace is over.
	Ready     bool       `json:"ready"`
	State     MountState `json:"state"`
	Ephemeral bool       `json:"ephemeral,omitempty"`
	// Protected: protect is set, so nothing removes it but volcli volume
	// remove --unprotect.
	Protected bool `json:"protected,omitempty"`
	// Host last mounted it.
	Host      string    `json:"host,omitempty"`
	NotBefore time.Time `json:"not-before,omitzero"`
	// Reason says why it is not Ready.
	Reason string `json:"reason,omitempty"`
}

// FindReclaimable returns, in the order of vols, the volumes that are not
// mounted (not in locked) and unused for at least their reclaim.unused-for,
// and the ephemeral volumes kept because they are in use until proven
// unmounted, each with Decide's verdict.
func FindReclaimable(vols []Volume, usage map[VolumeRef]Usage, locked map[VolumeRef]bool, grace time.Duration, now time.Time) []Reclaimable {
	var out []Reclaimable
	for i := range vols {
		v := &vols[i]
		ref := v.Ref()
		if locked[ref] {
			continue
		}
		var u *Usage
		if us, ok := usage[ref]; ok {
			u = &us
		}
		vd := Decide(v, u, false, grace, now)
		unprovenEphemeral := v.Ephemeral && vd.State == StateUnproven
		if !vd.Reclaimable && !unprovenEphemeral {
			continue
		}
		proven := vd.State == StateNeverMounted || vd.State == StateUnmounted
		r := Reclaimable{
			Volume: ref, LastUsed: vd.LastUsed, UnusedFor: Duration(now.Sub(vd.LastUsed).Truncate(time.Second)),
			WillRemove: !v.Protect && (v.Reclaim.Enabled && proven || vd.Ephemeral),
			Protected:  v.Protect,
			Ready:      vd.Ready, State: vd.State, Ephemeral: v.Ephemeral, Host: vd.Host, Reason: vd.Reason,
		}
		if !vd.Ready {
			r.NotBefore = vd.NotBefore
		}
		out = append(out, r)
	}
	return out
}

// Unproven is a volume that volsupervisor would remove (ephemeral, or
// reclaimable with reclaim.enabled) but keeps because it is in use until
// proven unmounted; it is listed in the supervisor's status.
type Unproven struct {
	Volume      VolumeRef `json:"volume"`
	Host        string    `json:"host"`
	LastMounted time.Time `json:"last-mounted"`
}
