package volmaster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// getCapacity answers how much space the backend that creates the policy's
// volumes has left there (its pool, on Ceph). A mount-only backend and a
// backend that cannot tell are 400: there is nothing to report, and asking
// again will not change that.
func (s *Server) getCapacity(w http.ResponseWriter, r *http.Request) {
	name, err := policyVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	rec, err := s.cache.Policy(name)
	if err != nil {
		writeError(w, err)
		return
	}
	p := rec.Policy
	if p.Backends.CRUD == "" {
		writeError(w, fmt.Errorf("policy %s: backend %s only mounts what exists elsewhere; it has no space to report: %w", name, p.Backends.Mount, config.ErrInvalid))
		return
	}
	b, ok := s.backends[p.Backends.CRUD]
	if !ok {
		writeError(w, fmt.Errorf("backend %s is not configured on this volmaster: %w", p.Backends.CRUD, config.ErrUnavailable))
		return
	}
	cr, ok := b.(storage.CapacityReporter)
	if !ok {
		writeError(w, fmt.Errorf("policy %s: backend %s cannot tell its free space: %w", name, p.Backends.CRUD, config.ErrInvalid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout())
	defer cancel()
	start := time.Now()
	c, err := cr.Capacity(ctx, storage.Volume{Policy: p.Name, Pool: p.Driver.Pool, Options: p.Driver.Options})
	s.metrics.observeBackend(p.Backends.CRUD, "capacity", start, err)
	if err != nil {
		writeError(w, fmt.Errorf("capacity of policy %s: %w", name, backendErr(err)))
		return
	}
	writeJSON(w, http.StatusOK, config.Capacity{Policy: name, Backend: p.Backends.CRUD, Store: c.Store, AvailableBytes: c.Available})
}
