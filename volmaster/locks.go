package volmaster

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/faultpoint"
)

func leaseVar(r *http.Request) (int64, error) {
	s := mux.Vars(r)["id"]
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, errInvalidf("lease ID %q must be a positive whole number", s)
	}
	return id, nil
}

func (s *Server) grantLease(w http.ResponseWriter, r *http.Request) {
	var req config.LeaseRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	hl, err := s.locks.Grant(r.Context(), req.Host, req.Holder, s.global.Load().TTL)
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.WithField("host", hl.Host).WithField("holder", hl.Holder).WithField("lease", hl.ID).Info("host lease granted")
	writeJSON(w, http.StatusCreated, hl)
}

func (s *Server) keepAlive(w http.ResponseWriter, r *http.Request) {
	id, err := leaseVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ttl, err := s.locks.KeepAlive(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, config.HostLease{ID: id, TTL: ttl})
}

func (s *Server) revokeLease(w http.ResponseWriter, r *http.Request) {
	id, err := leaseVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.locks.Revoke(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) acquireUse(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req config.MountRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	u, err := s.locks.Acquire(r.Context(), ref, req)
	if err != nil {
		writeError(w, err)
		return
	}
	faultpoint.Hit(r.Context(), "lock.granted", ref.String())
	writeJSON(w, http.StatusOK, u)
}

// releaseResponse lists the mount IDs still held after a release.
type releaseResponse struct {
	MountIDs []string `json:"mount-ids"`
}

func (s *Server) releaseUse(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	req := config.MountRequest{Hostname: q.Get("host"), Holder: q.Get("holder"), MountID: mux.Vars(r)["id"]}
	rest, err := s.locks.Release(r.Context(), ref, req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, releaseResponse{MountIDs: rest})
}
