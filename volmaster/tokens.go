package volmaster

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req config.TokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	t, err := s.store.CreateToken(r.Context(), req, s.now())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.store.ListTokens(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := config.ValidateName("token", id); err != nil {
		writeError(w, err)
		return
	}
	if err := s.store.RevokeToken(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Bootstrap creates the first admin token when auth is on and none exists,
// and writes its bearer string to path (mode 0600). With an admin token
// present it does nothing.
func (s *Server) Bootstrap(ctx context.Context, path string) error {
	ts, err := s.store.ListTokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.Role == config.RoleAdmin {
			return nil
		}
	}
	t, err := s.store.CreateToken(ctx, config.TokenRequest{Role: config.RoleAdmin, Description: "bootstrap"}, s.now())
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(t.Secret+"\n"), 0o600); err != nil {
		_ = s.store.RevokeToken(ctx, t.ID)
		return fmt.Errorf("write bootstrap token: %w", err)
	}
	s.log.WithField("file", path).WithField("token", t.ID).Warn("created the first admin token")
	return nil
}
