package volmaster

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/volplugin/volplugin/config"
)

// markFormatted records that a volume's first mkfs succeeded (PUT
// /v1/volumes/{policy}/{name}/formatted, from the volplugin that mounted
// it). Idempotent: a volume already marked keeps its first mark. It answers
// with the volume record.
func (s *Server) markFormatted(w http.ResponseWriter, r *http.Request) error {
	ref, err := refVar(r)
	if err != nil {
		return err
	}
	var req config.FormattedRequest
	if err := decodeBody(w, r, &req); err != nil {
		return fmt.Errorf("formatted request: %w", err)
	}
	if err := config.ValidateName("host", req.Host); err != nil {
		return err
	}
	v, rev, err := s.store.MarkFormatted(r.Context(), ref, req.CreatedAt, s.now())
	if err != nil {
		return err
	}
	if rev != 0 {
		s.settle(r.Context(), rev)
		s.log.WithField("volume", ref.String()).WithField("host", req.Host).Info("volume formatted")
	}
	if cached, err := s.cache.Volume(ref); err == nil && cached.FormattedAt.Equal(v.FormattedAt) {
		v = cached // with its runtime options
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// formattedOwner: PUT .../formatted is for the host its body names, which
// must hold the volume's mount lock (it mounted the volume to format it).
// A volume of an unlocked policy has no lock: any host may mount, and so
// mark, it.
func formattedOwner(s *Server, r *http.Request, _ string) ([]hostClaim, error) {
	ref, err := refVar(r)
	if err != nil {
		return nil, err
	}
	var req config.FormattedRequest
	if err := peekJSON(r, &req); err != nil {
		return nil, err
	}
	claims := []hostClaim{{"the formatted request names", req.Host}}
	v, err := s.cache.Volume(ref)
	if errors.Is(err, config.ErrNotFound) {
		return claims, nil
	}
	if err != nil {
		return nil, err
	}
	if v.Unlocked {
		return claims, nil
	}
	what := "the mount lock on " + ref.String() + " is held by"
	u, err := s.store.GetUse(r.Context(), ref)
	if errors.Is(err, config.ErrNotFound) {
		return append(claims, hostClaim{what, ""}), nil
	}
	if err != nil {
		return nil, err
	}
	return append(claims, hostClaim{what, u.Hostname}), nil
}
