package config

import (
	"fmt"
	"slices"
	"time"
)

// Roles a token may have.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleTenant may read and change the volumes (snapshots, runtime) of
	// its policies, and read but not change those policies.
	RoleTenant = "tenant"
	// RoleHost is what a volplugin needs: host leases, mount locks and
	// reading volumes. A host token is scoped to one host label (Token.Host)
	// and may only take and release that host's lease and locks.
	RoleHost = "host"
	// RoleReadOnly may read everything and change nothing.
	RoleReadOnly = "read-only"
)

// Token is a bearer token as stored: only the hash of its secret is kept.
type Token struct {
	ID       string   `json:"id"`
	Hash     string   `json:"hash,omitempty"`
	Role     string   `json:"role"`
	Policies []string `json:"policies,omitempty"`
	// Host is the host label a host token was issued for. Host tokens made
	// before tokens were scoped to a host have none and are refused on the
	// host routes until re-issued.
	Host        string    `json:"host,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Expires is when the token stops working (TokenRequest.TTL); zero for
	// a token that works until revoked.
	Expires time.Time `json:"expires,omitzero"`
}

// Expired tells whether the token no longer works at now.
func (t Token) Expired(now time.Time) bool { return !t.Expires.IsZero() && !now.Before(t.Expires) }

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role        string   `json:"role"`
	Policies    []string `json:"policies,omitempty"`
	Host        string   `json:"host,omitempty"`
	Description string   `json:"description,omitempty"`
	// TTL, if set, makes the token expire that long after its creation.
	TTL Duration `json:"ttl,omitzero"`
}

// Token lifetimes a TokenRequest may ask for.
const (
	MinTokenTTL = time.Minute
	MaxTokenTTL = 10 * 365 * 24 * time.Hour
)

// Validate checks the role, the policy names of a tenant token and the host
// label of a host token: policies are for, and only for, tenants; a host for,
// and only for, hosts.
func (r TokenRequest) Validate() error {
	switch r.Role {
	case RoleAdmin, RoleHost, RoleReadOnly, RoleTenant:
	default:
		return fmt.Errorf("role %q is not one of admin, tenant, host, read-only: %w", r.Role, ErrInvalid)
	}
	switch {
	case r.Role == RoleTenant && len(r.Policies) == 0:
		return fmt.Errorf("a tenant token needs at least one policy: %w", ErrInvalid)
	case r.Role != RoleTenant && r.Role != RoleHost && len(r.Policies) > 0:
		return fmt.Errorf("only tenant and host tokens are scoped to policies: %w", ErrInvalid)
	}
	for _, p := range r.Policies {
		if err := ValidateName("policy", p); err != nil {
			return err
		}
	}
	if r.Role == RoleHost {
		if r.Host == "" {
			return fmt.Errorf("a host token needs the host label it is for (its volplugin's --host-label): %w", ErrInvalid)
		}
		if err := ValidateName("host", r.Host); err != nil {
			return err
		}
	} else if r.Host != "" {
		return fmt.Errorf("only host tokens are scoped to a host: %w", ErrInvalid)
	}
	if r.TTL != 0 && (r.TTL.D() < MinTokenTTL || r.TTL.D() > MaxTokenTTL) {
		return fmt.Errorf("ttl %s is not between %s and 10 years: %w", r.TTL, MinTokenTTL, ErrInvalid)
	}
	if len(r.Description) > 256 {
		return fmt.Errorf("description longer than 256 characters: %w", ErrInvalid)
	}
	return nil
}

// Covers reports whether a tenant token is scoped to policy.
func (t Token) Covers(policy string) bool { return slices.Contains(t.Policies, policy) }

// NewToken is the answer to a token creation: the only time the secret is
// shown.
type NewToken struct {
	Token
	Secret string `json:"secret"`
}
