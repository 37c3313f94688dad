package volmaster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/volplugin/volplugin/config"
)

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req config.TokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t, err := s.store.CreateToken(r.Context(), req, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.store.ListTokens(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ts)
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["id"]
	if err := config.ValidateName("token", id); err != nil {
		return err
	}
	if err := s.store.RevokeToken(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Bootstrap creates the first admin token when auth is on and none exists,
// and writes its bearer string to path: a new file, mode 0600, never an
// existing file or a symlink (whose owner, mode or target an attacker could
// have chosen), so an existing path is an error and no token is made. With
// an admin token present it does nothing.
func (s *Server) Bootstrap(ctx context.Context, path string) error {
	// Volmasters started at once on one etcd would each find no admin
	// token and make one: they take turns, and the later ones find it.
	unlock, err := s.bootstrapLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	ts, err := s.store.ListTokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.Role == config.RoleAdmin {
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("bootstrap token file %s exists already; it is never overwritten: remove it, or pass another --bootstrap-token-file", path)
	}
	if err != nil {
		return fmt.Errorf("create bootstrap token file: %w", err)
	}
	t, err := s.store.CreateToken(ctx, config.TokenRequest{Role: config.RoleAdmin, Description: "bootstrap"}, s.now())
	if err != nil {
		f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("bootstrap token: %w", err)
	}
	err = writeSecret(f, t.Secret)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = s.store.RevokeToken(ctx, t.ID)
		_ = os.Remove(path)
		return fmt.Errorf("write bootstrap token file %s: %w", path, err)
	}
	s.log.WithField("file", path).WithField("token", t.ID).Warn("created the first admin token")
	return nil
}

// writeSecret writes a token's bearer string to f, readable by its owner
// only whatever the umask, and syncs it.
func writeSecret(f *os.File, secret string) error {
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return err
	}
	return f.Sync()
}

// bootstrapLock takes the bootstrap mutex on this volmaster's lease (a
// volmaster that dies holding it lets go with its lease) and returns its
// release.
func (s *Server) bootstrapLock(ctx context.Context) (func(), error) {
	sess, err := s.liveSession(ctx)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(sess, s.store.Keys().BootstrapLock())
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Lock(lctx); err != nil {
		return nil, config.EtcdError("bootstrap lock", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = m.Unlock(uctx)
	}, nil
}
