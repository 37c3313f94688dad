package volmaster

import (
	"net/http"

	"github.com/volplugin/volplugin/config"
)

// listSupervisors returns the status every running volsupervisor publishes.
func (s *Server) listSupervisors(w http.ResponseWriter, r *http.Request) error {
	out, err := s.store.SupervisorStatuses(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listReclaimable returns the volumes unused for longer than their policy's
// reclaim.unused-for, and the ephemeral volumes kept because they are in use
// until proven unmounted, each with the removal rule's verdict (what volcli
// volume reclaim --dry-run shows).
func (s *Server) listReclaimable(w http.ResponseWriter, r *http.Request) error {
	vols, err := s.cache.Volumes("")
	if err != nil {
		return err
	}
	vols = visibleOnly(r, vols, func(v config.Volume) string { return v.Policy })
	usage, locked, err := s.ops.Usage(r.Context())
	if err != nil {
		return err
	}
	out := config.FindReclaimable(vols, usage, locked, config.RemovalGrace(s.global.Load().TTL), s.now())
	if out == nil {
		out = []config.Reclaimable{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
