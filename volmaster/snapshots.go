package volmaster

import (
	"bytes"
	"context"
	"net/http"

	"github.com/volplugin/volplugin/config"
)

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	if _, err := s.cache.Volume(ref); err != nil {
		return err
	}
	snaps, err := s.store.ListSnapshots(r.Context(), ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, snaps)
	return nil
}

// takeSnapshot takes an on-demand snapshot now. Without a label it is
// pruned by the volume's keep count like a scheduled one; with one it is
// kept until removed, and a repeated request returns it (200).
func (s *Server) takeSnapshot(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req config.SnapshotRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := config.DecodeStrict(bytes.NewReader(body), &req); err != nil {
			return err
		}
	}
	h, err := s.holder(r.Context())
	if err != nil {
		return err
	}
	ops := s.volOps()
	if req.Label != "" {
		snap, made, err := ops.TakeLabelled(r.Context(), ref, req.Label, s.limits(ref.Policy).MaxKeep, h)
		if err != nil {
			return err
		}
		status := http.StatusOK
		if made {
			status = http.StatusCreated
			s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).WithField("label", snap.Label).Info("snapshot taken")
		}
		writeJSON(w, status, snap)
		return nil
	}
	snap, err := ops.Take(r.Context(), ref, h)
	if err != nil {
		return err
	}
	s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).Info("snapshot taken")
	// Pruned like a scheduled one, even where scheduled snapshots are off.
	if v, err := s.store.GetVolume(r.Context(), ref); err == nil {
		rt := v.Runtime.Snapshot
		if _, err := ops.Prune(r.Context(), ref, s.limits(ref.Policy).PruneKeep(rt), rt.Tiers, h); err != nil {
			s.log.WithError(err).WithField("volume", ref.String()).Warn("pruning after an on-demand snapshot")
		}
	}
	writeJSON(w, http.StatusCreated, snap)
	return nil
}

// removeSnapshot removes one snapshot (backend and record) under the
// volume's operation lock.
func (s *Server) removeSnapshot(w http.ResponseWriter, r *http.Request) error {
	ref, snap, err := snapVar(r)
	if err != nil {
		return err
	}
	h, err := s.holder(r.Context())
	if err != nil {
		return err
	}
	if err := s.volOps().RemoveSnapshot(r.Context(), ref, snap, h); err != nil {
		return err
	}
	s.log.WithField("volume", ref.String()).WithField("snapshot", snap).Info("snapshot removed")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// copySnapshot creates a new volume (same policy) from a snapshot. The
// source volume's operation lock keeps the snapshot from being pruned
// meanwhile; the new volume's record is rolled back if the copy fails.
func (s *Server) copySnapshot(w http.ResponseWriter, r *http.Request) error {
	ref, snap, err := snapVar(r)
	if err != nil {
		return err
	}
	var req config.CopyRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	to := config.VolumeRef{Policy: ref.Policy, Name: req.Name}
	if err := to.Validate(); err != nil {
		return err
	}
	v, err := s.CopySnapshot(r.Context(), ref, snap, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// CopySnapshot creates volume to from snapshot snap of volume from
// (volops.Ops.Copy).
func (s *Server) CopySnapshot(ctx context.Context, from config.VolumeRef, snap string, to config.VolumeRef) (config.Volume, error) {
	h, err := s.holder(ctx)
	if err != nil {
		return config.Volume{}, err
	}
	nv, rev, err := s.volOps().Copy(ctx, from, snap, to, s.limits(to.Policy), h)
	if rev > 0 {
		// The caller reads its own write (or its undoing).
		s.settle(context.WithoutCancel(ctx), rev)
	}
	if err != nil {
		return config.Volume{}, err
	}
	s.log.WithFields(map[string]any{"volume": to.String(), "from": from.String(), "snapshot": snap}).Info("volume copied from snapshot")
	return nv, nil
}
