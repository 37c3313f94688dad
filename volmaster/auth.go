package volmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

// Access is what a route requires of the caller's token when auth is on.
type Access int

const (
	// Public routes need no token (health and metrics).
	Public Access = iota
	// Read routes are open to every role; a tenant only to its policies.
	Read
	// VolumeWrite routes change volumes: admin, or a tenant of the
	// volume's policy.
	VolumeWrite
	// Host routes are what a volplugin does: leases and mount locks.
	Host
	// Admin routes change policies, global config, locks by force, tokens.
	Admin
)

var (
	errUnauthenticated = errors.New("unauthenticated")
	errForbidden       = errors.New("forbidden")
)

type callerKey struct{}

// caller returns the authenticated token of the request, if any.
func caller(r *http.Request) (config.Token, bool) {
	t, ok := r.Context().Value(callerKey{}).(config.Token)
	return t, ok
}

// authorize is the one place that decides who may call a route. With auth
// off every request passes. Every mutating request is audited either way.
func (s *Server) authorize(rt Route, next http.HandlerFunc) http.HandlerFunc {
	mutating := rt.Method != http.MethodGet
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth {
			if mutating {
				s.audited(rt, w, r, "anonymous", next)
				return
			}
			next(w, r)
			return
		}
		if rt.Access == Public {
			next(w, r)
			return
		}
		tok, err := s.authenticate(r)
		if err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, config.ErrUnavailable) {
				status = http.StatusServiceUnavailable
			}
			writeJSON(w, status, ErrorBody{Error: err.Error(), Code: codeOf(status)})
			if mutating {
				s.audit.record(auditEntry{Who: "unauthenticated", Method: r.Method, Route: rt.Path, Path: r.URL.Path, Status: status})
			}
			return
		}
		if err := permit(rt, tok, r); err != nil {
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: err.Error(), Code: "forbidden"})
			if mutating {
				s.audit.record(auditEntry{Who: tok.ID, Role: tok.Role, Method: r.Method, Route: rt.Path, Path: r.URL.Path, Status: http.StatusForbidden})
			}
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, tok))
		if mutating {
			s.audited(rt, w, r, tok.ID, next)
			return
		}
		next(w, r)
	}
}

func codeOf(status int) string {
	if status == http.StatusServiceUnavailable {
		return config.CodeUnavailable
	}
	return "unauthenticated"
}

func (s *Server) authenticate(r *http.Request) (config.Token, error) {
	h := r.Header.Get("Authorization")
	bearer, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || bearer == "" {
		return config.Token{}, fmt.Errorf("a bearer token is required (Authorization: Bearer ID.SECRET): %w", errUnauthenticated)
	}
	t, err := s.store.Authenticate(r.Context(), strings.TrimSpace(bearer))
	if errors.Is(err, config.ErrNotFound) {
		return config.Token{}, fmt.Errorf("invalid token: %w", errUnauthenticated)
	}
	return t, err
}

// permit applies the role rules to one request.
func permit(rt Route, t config.Token, r *http.Request) error {
	deny := func(why string) error {
		return fmt.Errorf("%s token may not %s %s: %s: %w", t.Role, r.Method, r.URL.Path, why, errForbidden)
	}
	switch t.Role {
	case config.RoleAdmin:
		return nil
	case config.RoleReadOnly:
		if rt.Access == Read {
			return nil
		}
		return deny("read-only")
	case config.RoleHost:
		if rt.Access == Read || rt.Access == Host {
			return nil
		}
		return deny("hosts may only read and manage leases and mount locks")
	case config.RoleTenant:
		if rt.Access != Read && rt.Access != VolumeWrite {
			return deny("tenants may only use the volumes of their policies")
		}
		policy, err := requestPolicy(rt, r)
		if err != nil {
			return deny(err.Error())
		}
		if policy == "" {
			return deny("tenants may only list within their policies (use /v1/volumes/POLICY)")
		}
		if !t.Covers(policy) {
			return deny("policy " + policy + " is not one of the token's")
		}
		return nil
	default:
		return deny("unknown role")
	}
}

// requestPolicy finds the policy a request is about: the {policy} path
// variable, or the "policy" field of a volume create body (the body is read
// and put back for the handler).
func requestPolicy(rt Route, r *http.Request) (string, error) {
	if p := mux.Vars(r)["policy"]; p != "" {
		return p, nil
	}
	if rt.Method != http.MethodPost || rt.Path != "/v1/volumes" {
		return "", nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return "", fmt.Errorf("read body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		Policy string `json:"policy"`
	}
	_ = json.Unmarshal(body, &req)
	return req.Policy, nil
}
