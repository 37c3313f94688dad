package volmaster

import (
	"context"
	"fmt"
	"net/http"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// getCapacity answers how much space the backend that creates the policy's
// volumes has left there (its pool, on Ceph). A mount-only backend and a
// backend that cannot tell are 400: there is nothing to report, and asking
// again will not change that.
func (s *Server) getCapacity(w http.ResponseWriter, r *http.Request) error {
	name, err := policyVar(r)
	if err != nil {
		return err
	}
	rec, err := s.cache.Policy(name)
	if err != nil {
		return err
	}
	p := rec.Policy
	if p.Backends.CRUD == "" {
		return fmt.Errorf("policy %s: backend %s only mounts what exists elsewhere; it has no space to report: %w", name, p.Backends.Mount, config.ErrInvalid)
	}
	b, ok := s.backends[p.Backends.CRUD]
	if !ok {
		return fmt.Errorf("backend %s is not configured on this volmaster: %w", p.Backends.CRUD, config.ErrUnavailable)
	}
	cr, ok := b.(storage.CapacityReporter)
	if !ok {
		return fmt.Errorf("policy %s: backend %s cannot tell its free space: %w", name, p.Backends.CRUD, config.ErrInvalid)
	}
	var c storage.Capacity
	err = s.volOps().Call(r.Context(), p.Backends.CRUD, "capacity", func(ctx context.Context) (err error) {
		c, err = cr.Capacity(ctx, storage.Volume{Policy: p.Name, Pool: p.Driver.Pool, Options: p.Driver.Options})
		return err
	})
	if err != nil {
		return fmt.Errorf("capacity of policy %s: %w", name, err)
	}
	writeJSON(w, http.StatusOK, config.Capacity{Policy: name, Backend: p.Backends.CRUD, Store: c.Store, AvailableBytes: c.Available})
	return nil
}
