package volmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
)

// Access is what a route requires of the caller's token when auth is on.
type Access int

const (
	// Public routes need no token (health and metrics).
	Public Access = iota
	// Read routes are open to every role; a tenant only to its policies.
	Read
	// List routes read across policies. Every role that may read gets them;
	// a tenant gets only the entries of its policies: the middleware puts
	// the caller's policy filter in the request and the handler applies it
	// with visibleOnly.
	List
	// VolumeWrite routes change volumes: admin, or a tenant of the
	// volume's policy.
	VolumeWrite
	// Host routes are what a volplugin does: leases and mount locks. A host
	// token may call them only for its own host, which the route's owner
	// function finds.
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
// Every request that passes carries the policy filter of its caller.
func (s *Server) authorize(rt Route, next http.HandlerFunc) http.HandlerFunc {
	// A read with a body (POST /v1/runtimes/watch) changes nothing.
	mutating := rt.Method != http.MethodGet && rt.Access != Read && rt.Access != List
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth || rt.Access == Public {
			r = withFilter(r, policyFilter{all: true})
			if mutating && !s.auth {
				s.audited(rt, w, r, "anonymous", next)
				return
			}
			next(w, r)
			return
		}
		tok, err := s.authenticate(r)
		if err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, config.ErrUnavailable) {
				status = http.StatusServiceUnavailable
			}
			writeJSON(w, status, config.ErrorBody{Error: err.Error(), Code: codeOf(status)})
			if mutating {
				s.audit.refuse(newEntry(r, rt, "unauthenticated", "", status))
			}
			return
		}
		filter, err := s.permit(rt, tok, r)
		if err != nil {
			status, code := http.StatusForbidden, "forbidden"
			if !errors.Is(err, errForbidden) {
				status, code = statusOf(err), config.ErrorCode(err)
			}
			writeJSON(w, status, config.ErrorBody{Error: err.Error(), Code: code})
			if mutating {
				s.audit.refuse(newEntry(r, rt, tok.ID, tok.Role, status))
			}
			return
		}
		r = withFilter(r.WithContext(context.WithValue(r.Context(), callerKey{}, tok)), filter)
		if tok.Role != config.RoleAdmin {
			sw := &scrubWriter{ResponseWriter: w, log: s.log, request: r.Context().Value(requestIDKey)}
			defer sw.flush()
			w = sw
		}
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
	t, err := s.store.Authenticate(r.Context(), strings.TrimSpace(bearer), s.now())
	if errors.Is(err, config.ErrNotFound) {
		if errors.Is(err, config.ErrExpired) {
			return config.Token{}, fmt.Errorf("token expired: %w", errUnauthenticated)
		}
		return config.Token{}, fmt.Errorf("invalid token: %w", errUnauthenticated)
	}
	return t, err
}

// permit applies the role rules to one request and returns the policies the
// caller may see. A refusal wraps errForbidden; an error finding what a host
// request touches (bad input, etcd down) keeps its own kind.
func (s *Server) permit(rt Route, t config.Token, r *http.Request) (policyFilter, error) {
	all := policyFilter{all: true}
	deny := func(why string) (policyFilter, error) {
		return policyFilter{}, fmt.Errorf("%s token may not %s %s: %s: %w", t.Role, r.Method, r.URL.Path, why, errForbidden)
	}
	if t.Role != config.RoleAdmin && forced(r) {
		// A forced remove drops the records without the image: a tenant
		// could orphan an image for good and take its name with it.
		return deny("force (removing the records without the image) is for admin tokens only")
	}
	if t.Role == config.RoleHost && flagged(r, "unprotect") {
		// docker volume rm and prune never remove a protected volume,
		// whatever a host sends.
		return deny("unprotect (removing a protected volume) is not for host tokens: use volcli with an admin or tenant token")
	}
	switch t.Role {
	case config.RoleAdmin:
		return all, nil
	case config.RoleReadOnly:
		if rt.Access == Read || rt.Access == List {
			return all, nil
		}
		return deny("read-only")
	case config.RoleHost:
		if rt.Access == Read || rt.Access == List {
			return all, nil
		}
		if rt.Access == VolumeWrite {
			// docker volume create/rm on the host: only in the policies the
			// token was issued for (none: mounts only).
			if len(t.Policies) == 0 {
				return deny("this host token has no policies (issue one with 'volcli token create --role host --host HOST --policy POLICY' " +
					"for docker volume create/rm on that host)")
			}
			if why := policyScope(rt, t, r, false); why != "" {
				return deny(why)
			}
			return all, nil
		}
		if rt.Access != Host {
			return deny("hosts may only read, manage leases and mount locks, and change volumes of the token's policies")
		}
		if rt.owner == nil {
			return deny("the route declares no owner rule")
		}
		claims, err := rt.owner(s, r, t.Host)
		if err != nil {
			return policyFilter{}, err
		}
		if t.Host == "" {
			// Issued before host tokens named their host, perhaps one token
			// shared by every host: refusing it (or binding it to the first
			// host) would cut running volplugins off their leases at the
			// upgrade, and their locks would go while containers write. It
			// keeps acting for any host until re-issued.
			if _, seen := s.legacyTokens.LoadOrStore(t.ID, true); !seen {
				s.log.WithField("token", t.ID).Warn("host token issued before host tokens named their host acts for any host: " +
					"re-issue one per host with 'volcli token create --role host --host HOST-LABEL' and revoke it")
			}
			return all, nil
		}
		for _, c := range claims {
			if c.host == t.Host {
				continue
			}
			if c.host == "" {
				return deny(fmt.Sprintf("%s no host, and the token is for host %q", c.what, t.Host))
			}
			return deny(fmt.Sprintf("%s host %q, not the token's host %q", c.what, c.host, t.Host))
		}
		return all, nil
	case config.RoleTenant:
		if rt.Access != Read && rt.Access != List && rt.Access != VolumeWrite {
			return deny("tenants may only use the volumes of their policies")
		}
		if why := policyScope(rt, t, r, rt.Access == List); why != "" {
			return deny(why)
		}
		return policyFilter{only: t.Policies}, nil
	default:
		return deny("unknown role")
	}
}

// policyScope says why a request is outside the token's policies ("" when
// it is inside). A request about no single policy passes only when list is
// set (the list is filtered instead).
func policyScope(rt Route, t config.Token, r *http.Request, list bool) string {
	policy, err := requestPolicy(rt, r)
	if err != nil {
		return err.Error()
	}
	if policy == "" && !list {
		return "the request is about no single policy, and the token is limited to its policies"
	}
	if policy != "" && !t.Covers(policy) {
		return "policy " + policy + " is not one of the token's"
	}
	return ""
}

// policyFilter is the set of policies whose objects a request may see.
type policyFilter struct {
	all  bool
	only []string
}

func (f policyFilter) allows(policy string) bool { return f.all || slices.Contains(f.only, policy) }

type filterKey struct{}

func withFilter(r *http.Request, f policyFilter) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), filterKey{}, f))
}

// visibleOnly keeps the items whose policy the caller may see: everything
// for every role but a tenant, a tenant's own policies' items for a tenant.
// A request that did not pass the middleware sees nothing.
func visibleOnly[T any](r *http.Request, items []T, policy func(T) string) []T {
	f, _ := r.Context().Value(filterKey{}).(policyFilter)
	if f.all {
		return items
	}
	out := make([]T, 0, len(items))
	for _, it := range items {
		if f.allows(policy(it)) {
			out = append(out, it)
		}
	}
	return out
}

// visiblePolicies is visibleOnly for policy records.
func visiblePolicies(r *http.Request, recs []store.PolicyRecord) []store.PolicyRecord {
	return visibleOnly(r, recs, func(p store.PolicyRecord) string { return p.Policy.Name })
}

// hostClaim is one host a Host request acts for or on: what says so ("lease
// 7 belongs to") and the host ("" for none).
type hostClaim struct {
	what string
	host string
}

// ownerFunc finds the hosts a Host route's request touches. A host token may
// make the request only if every claim is its own host. Objects that do not
// exist (an expired lease, a lock already gone) make no claim: the handler
// answers for them and nothing changes.
// host is the token's host, a hint that saves work when the request is in
// order.
type ownerFunc func(s *Server, r *http.Request, host string) ([]hostClaim, error)

// leaseRequestOwner: POST /v1/leases is for the host its body names.
func leaseRequestOwner(_ *Server, r *http.Request, _ string) ([]hostClaim, error) {
	var req config.LeaseRequest
	if err := peekJSON(r, &req); err != nil {
		return nil, err
	}
	return []hostClaim{{"the lease request names", req.Host}}, nil
}

// leaseOwner: a lease in the path belongs to the host it was granted to.
func leaseOwner(s *Server, r *http.Request, host string) ([]hostClaim, error) {
	id, err := leaseVar(r)
	if err != nil {
		return nil, err
	}
	return s.leaseClaim(r.Context(), id, host)
}

func (s *Server) leaseClaim(ctx context.Context, id int64, hint string) ([]hostClaim, error) {
	host, err := s.locks.LeaseHost(ctx, id, hint)
	if errors.Is(err, config.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []hostClaim{{fmt.Sprintf("lease %d belongs to", id), host}}, nil
}

// mountRequestOwner: PUT /v1/uses/... is for the host its body names, on a
// lease that must be that host's.
func mountRequestOwner(s *Server, r *http.Request, host string) ([]hostClaim, error) {
	var req config.MountRequest
	if err := peekJSON(r, &req); err != nil {
		return nil, err
	}
	claims := []hostClaim{{"the mount request names", req.Hostname}}
	if req.Lease != 0 {
		lc, err := s.leaseClaim(r.Context(), req.Lease, host)
		if err != nil {
			return nil, err
		}
		claims = append(claims, lc...)
	}
	return claims, nil
}

// mountLockOwner: DELETE /v1/uses/.../mounts/{id} is for the host of its
// ?host= and touches the lock's holder.
func mountLockOwner(s *Server, r *http.Request, _ string) ([]hostClaim, error) {
	ref, err := refVar(r)
	if err != nil {
		return nil, err
	}
	claims := []hostClaim{{"the release request names", r.URL.Query().Get("host")}}
	u, err := s.store.GetUse(r.Context(), ref)
	if errors.Is(err, config.ErrNotFound) {
		return claims, nil
	}
	if err != nil {
		return nil, err
	}
	return append(claims, hostClaim{"the mount lock on " + ref.String() + " is held by", u.Hostname}), nil
}

// peekBody reads the request body and puts it back for the handler. A body
// over maxBody is cut at maxBody+1 bytes, which the handler refuses.
func peekBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("read request body: %v: %w", err, config.ErrInvalid)
	}
	return body, nil
}

// peekJSON decodes the body into v leniently (the handler decodes it
// strictly) and puts it back.
func peekJSON(r *http.Request, v any) error {
	body, err := peekBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("request body is not the expected JSON object: %v: %w", err, config.ErrInvalid)
	}
	return nil
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
	body, err := peekBody(r)
	if err != nil {
		return "", err
	}
	var req struct {
		Policy string `json:"policy"`
	}
	_ = json.Unmarshal(body, &req)
	return req.Policy, nil
}

// forced tells whether a request asks for force: any force parameter but a
// false one (the handler refuses one that is not a boolean).
func forced(r *http.Request) bool { return flagged(r, "force") }

// flagged tells whether a request sets the boolean parameter name: any
// value but a false one.
func flagged(r *http.Request, name string) bool {
	v, ok := r.URL.Query()[name]
	if !ok {
		return false
	}
	for _, f := range v {
		if b, err := strconv.ParseBool(f); err != nil || b {
			return true
		}
	}
	return false
}
