package csi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volplugin/volplugin/config"
)

// A CSI snapshot is a labelled volmaster snapshot (config.Snapshot.Label):
// its label is the CSI name mapped as volume names are (VolumeName), it is
// never pruned by the volume's keep or tiers, and it goes only by
// DeleteSnapshot. Its ID is POLICY/NAME@SNAPSHOT. Scheduled and unlabelled
// on-demand snapshots, which pruning may take at any time, are not listed.

// snapshotRef reads a CSI snapshot ID; one that is not ours names no
// snapshot (config.ErrNotFound).
func snapshotRef(id string) (config.VolumeRef, string, error) {
	if id == "" {
		return config.VolumeRef{}, "", missing("snapshot ID")
	}
	vol, snap, ok := strings.Cut(id, "@")
	ref, err := config.ParseVolumeRef(vol)
	if ok && err == nil {
		_, err = config.ParseSnapshotName(snap)
	}
	if !ok || err != nil {
		return config.VolumeRef{}, "", fmt.Errorf("snapshot ID %q is not a POLICY/NAME@SNAPSHOT of this driver: %w", id, config.ErrNotFound)
	}
	return ref, snap, nil
}

func snapshotID(ref config.VolumeRef, snap string) string { return ref.String() + "@" + snap }

func csiSnapshot(ref config.VolumeRef, s config.Snapshot, size int64) *csipb.Snapshot {
	return &csipb.Snapshot{SnapshotId: snapshotID(ref, s.Name), SourceVolumeId: ref.String(), SizeBytes: size,
		CreationTime: timestamppb.New(s.Time), ReadyToUse: true}
}

// labelled is every CSI snapshot: each volume's labelled snapshots, with the
// volume's size, sorted by ID. It asks volmaster once per volume.
func (c controller) labelled(ctx context.Context, refs []config.VolumeRef) ([]*csipb.Snapshot, error) {
	var out []*csipb.Snapshot
	for _, ref := range refs {
		v, err := c.s.cfg.API.Volume(ctx, ref)
		if errors.Is(err, config.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		size, _ := sizeBytes(&v)
		snaps, err := c.s.cfg.API.Snapshots(ctx, ref)
		if errors.Is(err, config.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			if s.Label != "" {
				out = append(out, csiSnapshot(ref, s, size))
			}
		}
	}
	slices.SortFunc(out, func(a, b *csipb.Snapshot) int { return strings.Compare(a.SnapshotId, b.SnapshotId) })
	return out, nil
}

// labelHolder returns the volume other than except whose snapshots have
// label, or nil: CSI snapshot names are unique across volumes, labels only
// within one. It asks volmaster for every volume's snapshots.
func (c controller) labelHolder(ctx context.Context, label string, except config.VolumeRef) (*config.VolumeRef, error) {
	refs, err := c.s.cfg.API.Volumes(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, ref := range refs {
		if ref == except {
			continue
		}
		snaps, err := c.s.cfg.API.Snapshots(ctx, ref)
		if errors.Is(err, config.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(snaps, func(s config.Snapshot) bool { return s.Label == label }) {
			return &ref, nil
		}
	}
	return nil, nil
}

// CreateSnapshot takes a labelled snapshot of the source volume, or returns
// the one a previous call took; a name used for another volume's snapshot
// is AlreadyExists.
func (c controller) CreateSnapshot(ctx context.Context, req *csipb.CreateSnapshotRequest) (*csipb.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, statusError(missing("name"))
	}
	if req.GetSourceVolumeId() == "" {
		return nil, statusError(missing("source volume ID"))
	}
	ref, err := volumeRef(req.GetSourceVolumeId())
	if err != nil {
		return nil, statusError(err)
	}
	v, err := c.s.cfg.API.Volume(ctx, ref)
	if err != nil {
		return nil, statusError(err)
	}
	label := VolumeName(req.GetName())
	if other, err := c.labelHolder(ctx, label, ref); err != nil {
		return nil, statusError(err)
	} else if other != nil {
		return nil, statusError(fmt.Errorf("snapshot name %q is taken by a snapshot of volume %s: %w", req.GetName(), *other, config.ErrExists))
	}
	snap, err := c.s.cfg.API.TakeLabelledSnapshot(ctx, ref, label)
	if err != nil {
		return nil, statusError(fmt.Errorf("snapshot %s: %w", ref, err))
	}
	size, _ := sizeBytes(&v)
	return &csipb.CreateSnapshotResponse{Snapshot: csiSnapshot(ref, snap, size)}, nil
}

// DeleteSnapshot removes the snapshot; an unknown or removed one is no
// error.
func (c controller) DeleteSnapshot(ctx context.Context, req *csipb.DeleteSnapshotRequest) (*csipb.DeleteSnapshotResponse, error) {
	ref, snap, err := snapshotRef(req.GetSnapshotId())
	if errors.Is(err, config.ErrNotFound) {
		return &csipb.DeleteSnapshotResponse{}, nil
	}
	if err != nil {
		return nil, statusError(err)
	}
	if err := c.s.cfg.API.RemoveSnapshot(ctx, ref, snap); err != nil && !errors.Is(err, config.ErrNotFound) {
		return nil, statusError(fmt.Errorf("remove snapshot %s of %s: %w", snap, ref, err))
	}
	return &csipb.DeleteSnapshotResponse{}, nil
}

// ListSnapshots pages through the CSI snapshots sorted by ID (the token is
// the last ID of the previous page), of one volume or one snapshot when
// asked.
func (c controller) ListSnapshots(ctx context.Context, req *csipb.ListSnapshotsRequest) (*csipb.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, statusError(fmt.Errorf("max_entries %d is negative: %w", req.GetMaxEntries(), config.ErrInvalid))
	}
	after := req.GetStartingToken()
	if after != "" {
		if _, _, err := snapshotRef(after); err != nil {
			return nil, statusError(fmt.Errorf("starting token %q is not one ListSnapshots gave: %w", after, errBadToken))
		}
	}
	var refs []config.VolumeRef
	switch {
	case req.GetSnapshotId() != "":
		ref, _, err := snapshotRef(req.GetSnapshotId())
		if err != nil {
			return &csipb.ListSnapshotsResponse{}, nil
		}
		refs = []config.VolumeRef{ref}
	case req.GetSourceVolumeId() != "":
		ref, err := volumeRef(req.GetSourceVolumeId())
		if err != nil {
			return &csipb.ListSnapshotsResponse{}, nil
		}
		refs = []config.VolumeRef{ref}
	default:
		var err error
		if refs, err = c.s.cfg.API.Volumes(ctx, ""); err != nil {
			return nil, statusError(err)
		}
	}
	snaps, err := c.labelled(ctx, refs)
	if err != nil {
		return nil, statusError(err)
	}
	if id := req.GetSnapshotId(); id != "" {
		snaps = slices.DeleteFunc(snaps, func(s *csipb.Snapshot) bool { return s.SnapshotId != id })
	}
	start, _ := slices.BinarySearchFunc(snaps, after, func(s *csipb.Snapshot, id string) int { return strings.Compare(s.SnapshotId, id) })
	if start < len(snaps) && snaps[start].SnapshotId == after {
		start++
	}
	resp := &csipb.ListSnapshotsResponse{}
	for _, s := range snaps[start:] {
		if req.GetMaxEntries() > 0 && len(resp.Entries) == int(req.GetMaxEntries()) {
			resp.NextToken = resp.Entries[len(resp.Entries)-1].Snapshot.SnapshotId
			break
		}
		resp.Entries = append(resp.Entries, &csipb.ListSnapshotsResponse_Entry{Snapshot: s})
	}
	return resp, nil
}

// createFromSnapshot makes volume ref a copy of a CSI snapshot (volmaster's
// snapshot copy: the source's record, policy copy and runtime options, with
// its data), grown to the capacity asked if that is more. The copy is in
// the source's policy, so the StorageClass must name it; its other
// parameters are not applied (the copy takes the source's).
func (c controller) createFromSnapshot(ctx context.Context, ref config.VolumeRef, id string, req *csipb.CreateVolumeRequest) (config.Volume, error) {
	src, snap, err := snapshotRef(id)
	if err != nil {
		return config.Volume{}, err
	}
	if src.Policy != ref.Policy {
		return config.Volume{}, fmt.Errorf("snapshot %s is of a volume of policy %s: a volume made from it is in that policy, not %s: %w", id, src.Policy, ref.Policy, config.ErrInvalid)
	}
	snaps, err := c.s.cfg.API.Snapshots(ctx, src)
	if errors.Is(err, config.ErrNotFound) || err == nil && !slices.ContainsFunc(snaps, func(s config.Snapshot) bool { return s.Name == snap && s.Label != "" }) {
		return config.Volume{}, fmt.Errorf("snapshot %s: %w", id, config.ErrNotFound)
	}
	if err != nil {
		return config.Volume{}, err
	}
	if len(req.GetAccessibilityRequirements().GetRequisite()) > 0 {
		// The copy is made where the source is.
		sv, err := c.s.cfg.API.Volume(ctx, src)
		if err != nil {
			return config.Volume{}, err
		}
		if _, err := c.placement(ctx, src.Policy, sv.Backends, req.GetAccessibilityRequirements()); err != nil {
			return config.Volume{}, err
		}
	}
	v, err := c.s.cfg.API.CopySnapshot(ctx, src, snap, ref.Name)
	if err != nil {
		return config.Volume{}, fmt.Errorf("copy snapshot %s to %s: %w", id, ref, err)
	}
	if want := req.GetCapacityRange().GetRequiredBytes(); want > 0 {
		if n, err := sizeBytes(&v); err == nil && n < want {
			return c.s.cfg.API.ResizeVolume(ctx, ref, fmt.Sprint(want))
		}
	}
	return v, nil
}

// GetSnapshot returns one CSI snapshot; NotFound if there is none of that
// ID.
func (c controller) GetSnapshot(ctx context.Context, req *csipb.GetSnapshotRequest) (*csipb.GetSnapshotResponse, error) {
	ref, snap, err := snapshotRef(req.GetSnapshotId())
	if err != nil {
		return nil, statusError(err)
	}
	snaps, err := c.labelled(ctx, []config.VolumeRef{ref})
	if err != nil {
		return nil, statusError(err)
	}
	id := snapshotID(ref, snap)
	if i := slices.IndexFunc(snaps, func(s *csipb.Snapshot) bool { return s.SnapshotId == id }); i >= 0 {
		return &csipb.GetSnapshotResponse{Snapshot: snaps[i]}, nil
	}
	return nil, statusError(fmt.Errorf("snapshot %s: %w", id, config.ErrNotFound))
}
