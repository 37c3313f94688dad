package volmaster

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/volops"
)

// volOps is the server's volume operations with the current global
// timeout for each backend call.
func (s *Server) volOps() *volops.Ops {
	ops := *s.ops
	ops.Timeout = s.timeout()
	return &ops
}

// boolQuery parses an optional true/false query parameter.
func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errInvalidf("%s=%q must be true or false", name, v)
	}
	return b, nil
}

func (s *Server) removeVolume(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	var opts config.RemoveOptions
	if opts.Force, err = boolQuery(r, "force"); err != nil {
		return err
	}
	if opts.Unprotect, err = boolQuery(r, "unprotect"); err != nil {
		return err
	}
	e, err := s.RemoveVolume(r.Context(), ref, opts)
	if err != nil {
		return err
	}
	if e == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

// RemoveVolume removes a volume that is not mounted anywhere and whose last
// mount, if any, has a recorded unmount (a volume whose host died with it
// mounted is ErrInUse until an operator runs volcli use force-remove). A
// protected volume is refused (config.ErrProtected) unless opts.Unprotect.
// The volume goes to the trash (returned), unless it is ephemeral (then it
// is destroyed, nil). With opts.Force every record of the volume is
// deleted in one transaction and its image left in the backend (nil).
func (s *Server) RemoveVolume(ctx context.Context, ref config.VolumeRef, opts config.RemoveOptions) (*config.TrashEntry, error) {
	if opts.Force {
		v, err := s.store.GetVolume(ctx, ref)
		if err != nil {
			return nil, err
		}
		if v.Protect && !opts.Unprotect {
			return nil, config.ProtectedError(ref)
		}
		rev, err := s.store.ForceRemove(ctx, ref)
		if err != nil {
			return nil, err
		}
		s.settle(ctx, rev)
		s.log.WithField("volume", ref.String()).Warn("volume records force-removed (image left in the backend)")
		return nil, nil
	}
	h, err := s.holder(ctx)
	if err != nil {
		return nil, err
	}
	ops := s.volOps()
	check := volops.Manual
	if opts.Unprotect {
		check = volops.Unprotect
	}
	res, err := ops.Discard(ctx, ref, check, h)
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Revision)
	if res.Trash != nil {
		s.log.WithField("volume", ref.String()).WithField("trash-id", res.Trash.ID).Info("volume moved to the trash")
	} else {
		s.log.WithField("volume", ref.String()).Info("volume removed")
	}
	return res.Trash, nil
}

// trashRefVar returns the validated {policy}/{name}/{id} path variables.
func trashRefVar(r *http.Request) (config.TrashRef, error) {
	ref, err := refVar(r)
	if err != nil {
		return config.TrashRef{}, err
	}
	tref := config.TrashRef{Volume: ref, ID: mux.Vars(r)["id"]}
	return tref, tref.Validate()
}

// listTrash lists the trash entries (all, or one policy's with
// ?policy=, or one volume name's with ?policy= and ?name=) that the
// caller may see. Entries are always whole (?detail= is accepted, as on
// the other lists, and changes nothing).
func (s *Server) listTrash(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "policy" && k != "name" && k != "detail" {
			return errInvalidf("unknown parameter %q (policy, name, detail)", k)
		}
	}
	var ref config.VolumeRef
	policy, name := q.Get("policy"), q.Get("name")
	if name != "" {
		ref = config.VolumeRef{Policy: policy, Name: name}
		if err := ref.Validate(); err != nil {
			return err
		}
	} else if policy != "" {
		if err := config.ValidateName("policy", policy); err != nil {
			return err
		}
	}
	entries, err := s.store.ListTrash(r.Context(), ref)
	if err != nil {
		return err
	}
	out := make([]config.TrashEntry, 0, len(entries))
	for _, e := range entries {
		if policy == "" || e.Volume.Policy == policy {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, visibleOnly(r, out, func(e config.TrashEntry) string { return e.Volume.Policy }))
	return nil
}

func (s *Server) restoreTrash(w http.ResponseWriter, r *http.Request) error {
	tref, err := trashRefVar(r)
	if err != nil {
		return err
	}
	h, err := s.holder(r.Context())
	if err != nil {
		return err
	}
	ops := s.volOps()
	v, rev, err := ops.Restore(r.Context(), tref, h)
	if err != nil {
		// The caller reads its own (undone) write: no volume.
		s.settle(r.Context(), rev)
		return err
	}
	s.settle(r.Context(), rev)
	s.log.WithField("volume", tref.Volume.String()).WithField("trash-id", tref.ID).Info("volume restored from the trash")
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) purgeTrash(w http.ResponseWriter, r *http.Request) error {
	tref, err := trashRefVar(r)
	if err != nil {
		return err
	}
	ops := s.volOps()
	rev, err := ops.Purge(r.Context(), tref)
	if err != nil {
		return err
	}
	s.settle(r.Context(), rev)
	s.log.WithField("volume", tref.Volume.String()).WithField("trash-id", tref.ID).Info("trash entry purged")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
