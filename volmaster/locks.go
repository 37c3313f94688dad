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

func (s *Server) grantLease(w http.ResponseWriter, r *http.Request) error {
	var req config.LeaseRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	hl, err := s.locks.Grant(r.Context(), req.Host, req.Holder, s.global.Load().TTL)
	if err != nil {
		return err
	}
	s.log.WithField("host", hl.Host).WithField("holder", hl.Holder).WithField("lease", hl.ID).Info("host lease granted")
	writeJSON(w, http.StatusCreated, hl)
	return nil
}

func (s *Server) keepAlive(w http.ResponseWriter, r *http.Request) error {
	id, err := leaseVar(r)
	if err != nil {
		return err
	}
	ttl, err := s.locks.KeepAlive(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, config.HostLease{ID: id, TTL: ttl})
	return nil
}

func (s *Server) revokeLease(w http.ResponseWriter, r *http.Request) error {
	id, err := leaseVar(r)
	if err != nil {
		return err
	}
	if err := s.locks.Revoke(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) acquireUse(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	var req config.MountRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	u, err := s.locks.Acquire(r.Context(), ref, req)
	if err != nil {
		return err
	}
	faultpoint.Hit(r.Context(), "lock.granted", ref.String())
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *Server) releaseUse(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := config.MountRequest{Hostname: q.Get("host"), Holder: q.Get("holder"), MountID: mux.Vars(r)["id"]}
	rest, err := s.locks.Release(r.Context(), ref, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, config.ReleaseResponse{MountIDs: rest})
	return nil
}
