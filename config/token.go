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
	// reading volumes.
	RoleHost = "host"
	// RoleReadOnly may read everything and change nothing.
	RoleReadOnly = "read-only"
)

// Token is a bearer token as stored: only the hash of its secret is kept.
type Token struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash,omitempty"`
	Role        string    `json:"role"`
	Policies    []string  `json:"policies,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role        string   `json:"role"`
	Policies    []string `json:"policies,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Validate checks the role and, for tenants, the policy names.
func (r TokenRequest) Validate() error {
	switch r.Role {
	case RoleAdmin, RoleHost, RoleReadOnly:
		if len(r.Policies) > 0 {
			return fmt.Errorf("only tenant tokens are scoped to policies: %w", ErrInvalid)
		}
	case RoleTenant:
		if len(r.Policies) == 0 {
			return fmt.Errorf("a tenant token needs at least one policy: %w", ErrInvalid)
		}
		for _, p := range r.Policies {
			if err := ValidateName("policy", p); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("role %q is not one of admin, tenant, host, read-only: %w", r.Role, ErrInvalid)
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
