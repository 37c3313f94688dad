package volmaster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// cleanupTimeout bounds a rollback, which runs even if the request was
// cancelled.
const cleanupTimeout = time.Minute

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	policy := ""
	if _, ok := mux.Vars(r)["policy"]; ok {
		var err error
		if policy, err = policyVar(r); err != nil {
			return err
		}
	}
	if wantDetail(r) {
		vols, err := s.cache.Volumes(policy)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, visibleOnly(r, vols, func(v config.Volume) string { return v.Policy }))
		return nil
	}
	refs, err := s.cache.VolumeRefs(policy)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, visibleOnly(r, refs, func(v config.VolumeRef) string { return v.Policy }))
	return nil
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	b, err := s.cache.VolumeJSON(ref)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	return nil
}

// crud returns the backend that creates and destroys v's image, nil for a
// mount-only volume.
func (s *Server) crud(v *config.Volume) (storage.CRUD, error) {
	if v.Backends.CRUD == "" {
		return nil, nil
	}
	b, ok := s.backends[v.Backends.CRUD]
	if !ok {
		return nil, fmt.Errorf("backend %s is not configured on this volmaster: %w", v.Backends.CRUD, config.ErrUnavailable)
	}
	return b, nil
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	var req config.VolumeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return fmt.Errorf("volume request: %w", err)
	}
	v, err := s.CreateVolume(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// CreateVolume validates the request, writes the record and creates the
// image; if the image cannot be made the record is rolled back, so there is
// never a record without an image or an image without a record.
func (s *Server) CreateVolume(ctx context.Context, req config.VolumeRequest) (config.Volume, error) {
	ref := config.VolumeRef{Policy: req.Policy, Name: req.Name}
	if err := ref.Validate(); err != nil {
		return config.Volume{}, err
	}
	pol, err := s.store.GetPolicy(ctx, ref.Policy)
	if err != nil {
		return config.Volume{}, err
	}
	v, err := config.NewVolume(ref, pol.Policy, pol.Revision, req.Options, s.now())
	if err != nil {
		return config.Volume{}, err
	}
	h, err := s.holder(ctx)
	if err != nil {
		return config.Volume{}, err
	}
	rev, err := s.volOps().Create(ctx, v, pol.Policy.Limits, h)
	if rev > 0 {
		// The caller reads its own write (or its undoing).
		s.settle(context.WithoutCancel(ctx), rev)
	}
	if err != nil {
		return config.Volume{}, err
	}
	s.log.WithField("volume", ref.String()).Info("volume created")
	return v, nil
}

func (s *Server) getRuntime(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	v, err := s.cache.Volume(ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v.Runtime)
	return nil
}

func (s *Server) putRuntime(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	rt, err := config.DecodeRuntime(body)
	if err != nil {
		return err
	}
	if err := s.limits(ref.Policy).CheckRuntime(rt); err != nil {
		return fmt.Errorf("runtime of %s: %w", ref, err)
	}
	rev, err := s.store.PutRuntime(r.Context(), ref, rt)
	if err != nil {
		return err
	}
	s.settle(r.Context(), rev)
	writeJSON(w, http.StatusOK, rt)
	return nil
}

func (s *Server) resizeVolume(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	var req config.ResizeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return fmt.Errorf("resize request: %w", err)
	}
	v, err := s.ResizeVolume(r.Context(), ref, req.Size)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// ResizeVolume grows a volume's image (and, where the backend can do it
// here, its filesystem) under the operation lock, then records the new size.
// New mounts are refused meanwhile (the operation lock). A host that has the
// volume mounted learns the new size through its runtime long poll and grows
// the filesystem online; an unmounted volume's filesystem grows at its next
// mount. A filesystem grow that fails after the image grew still records
// the new size (the image cannot shrink back) and answers an error; asking
// for the same size again finishes the grow.
func (s *Server) ResizeVolume(ctx context.Context, ref config.VolumeRef, size string) (config.Volume, error) {
	cur, err := s.cache.Volume(ref)
	if err != nil {
		return config.Volume{}, err
	}
	// Checked before taking the lock, and again on the record read under it.
	_, n, err := cur.Grow(size, s.now())
	if err != nil {
		return config.Volume{}, err
	}
	if err := s.checkGrowth(ref, cur, n); err != nil {
		return config.Volume{}, err
	}
	backend, err := s.crud(&cur)
	if err != nil {
		return config.Volume{}, err
	}
	if backend == nil {
		return config.Volume{}, fmt.Errorf("volume %s is mount-only (backend %s has no images to grow): %w", ref, cur.Backends.Mount, config.ErrInvalid)
	}
	if cur.Unlocked {
		// Its mounts take no lock, so nothing tells whether one is mounted
		// while its filesystem would be checked and grown.
		return config.Volume{}, fmt.Errorf("volume %s is unlocked (mounted without a mount lock): it cannot be resized: %w", ref, config.ErrInvalid)
	}
	h, err := s.holder(ctx)
	if err != nil {
		return config.Volume{}, err
	}
	locked, err := s.store.BeginIntent(ctx, ref, store.Intent{Op: "resize", Size: size}, h)
	if err != nil {
		return config.Volume{}, err
	}
	return s.resizeLocked(ctx, locked, size, h)
}

// resizeLocked grows locked (the record read under the operation lock h
// holds) to size and drops the lock (volops.Ops.ResizeLocked): the rest of
// ResizeVolume, and the recovery of a resize cut short.
func (s *Server) resizeLocked(ctx context.Context, locked config.Volume, size string, h store.Holder) (config.Volume, error) {
	ref := locked.Ref()
	grown, rev, err := s.volOps().ResizeLocked(ctx, locked, size, h)
	if rev > 0 {
		s.settle(context.WithoutCancel(ctx), rev)
	}
	if errors.Is(err, storage.ErrNotGrown) {
		s.log.WithError(err).WithFields(map[string]any{"volume": ref.String(), "size": grown.Create.Size}).
			Warn("volume image resized, filesystem not grown")
		return config.Volume{}, err
	}
	if err != nil {
		return config.Volume{}, err
	}
	s.log.WithFields(map[string]any{"volume": ref.String(), "size": grown.Create.Size}).Info("volume resized")
	return grown, nil
}

// limits returns the current limits of a policy (none for a policy gone).
func (s *Server) limits(policy string) config.Limits {
	rec, err := s.cache.Policy(policy)
	if err != nil {
		return config.Limits{}
	}
	return rec.Policy.Limits
}

// checkGrowth refuses growing v to n bytes beyond its policy's limits: the
// size of one volume, and the total of the policy's volumes.
func (s *Server) checkGrowth(ref config.VolumeRef, v config.Volume, n int64) error {
	lim := s.limits(ref.Policy)
	if err := lim.CheckSize(n); err != nil {
		return fmt.Errorf("resize %s: %w", ref, err)
	}
	if lim.MaxTotalSize == "" {
		return nil
	}
	vols, err := s.cache.Volumes(ref.Policy)
	if err != nil {
		return err
	}
	var total int64
	for _, o := range vols {
		if o.Name != ref.Name {
			b, _ := o.SizeBytes()
			total += b
		}
	}
	// Counted as one more volume of n bytes, without the count limit.
	lim.MaxVolumes = 0
	if err := lim.CheckCount(0, total, n); err != nil {
		return fmt.Errorf("resize %s: %w", ref, err)
	}
	return nil
}
