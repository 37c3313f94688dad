package volmaster

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

func wantDetail(r *http.Request) bool {
	d, _ := strconv.ParseBool(r.URL.Query().Get("detail"))
	return d
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) error {
	recs, err := s.cache.Policies()
	if err != nil {
		return err
	}
	recs = visiblePolicies(r, recs)
	if wantDetail(r) {
		out := make([]config.Policy, len(recs))
		for i, rec := range recs {
			out[i] = rec.Policy
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	names := make([]string, len(recs))
	for i, rec := range recs {
		names[i] = rec.Policy.Name
	}
	writeJSON(w, http.StatusOK, names)
	return nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	rec, err := s.cache.Policy(name)
	if err != nil {
		return err
	}
	w.Header().Set(config.PolicyRevisionHeader, strconv.FormatInt(rec.Revision, 10))
	writeJSON(w, http.StatusOK, rec.Policy)
	return nil
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	p, err := config.DecodePolicy(name, body)
	if err != nil {
		return err
	}
	rec, rev, err := s.store.PutPolicy(r.Context(), p, s.now())
	if err != nil {
		return err
	}
	s.settle(r.Context(), rev)
	w.Header().Set(config.PolicyRevisionHeader, strconv.FormatInt(rec.Revision, 10))
	writeJSON(w, http.StatusOK, rec.Policy)
	return nil
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	rev, err := s.store.DeletePolicy(r.Context(), name)
	if err != nil {
		return err
	}
	s.settle(r.Context(), rev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	revs, err := s.store.PolicyRevisions(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, revs)
	return nil
}

func (s *Server) getRevision(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	rev, err := strconv.ParseInt(mux.Vars(r)["rev"], 10, 64)
	if err != nil || rev < 1 {
		return errInvalidf("revision %q must be a positive whole number", mux.Vars(r)["rev"])
	}
	rec, err := s.store.PolicyRevision(r.Context(), name, rev)
	if err != nil {
		return err
	}
	w.Header().Set(config.PolicyRevisionHeader, strconv.FormatInt(rec.Revision, 10))
	writeJSON(w, http.StatusOK, rec.Policy)
	return nil
}
