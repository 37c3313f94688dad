package volmaster

import (
	"net/http"
)

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.cache.Volume(ref); err != nil {
		writeError(w, err)
		return
	}
	snaps, err := s.store.ListSnapshots(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, snaps)
}

// takeSnapshot takes an on-demand snapshot now. It is pruned by the volume's
// keep count like a scheduled one.
func (s *Server) takeSnapshot(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	h, err := s.holder(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	taker := *s.snaps
	taker.Timeout = s.timeout()
	snap, err := taker.Take(r.Context(), ref, h)
	if err != nil {
		writeError(w, backendErr(err))
		return
	}
	s.log.WithField("volume", ref.String()).WithField("snapshot", snap.Name).Info("snapshot taken")
	writeJSON(w, http.StatusCreated, snap)
}
