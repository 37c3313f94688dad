package config

import (
	"errors"
	"strings"
	"testing"
)

func TestTokenRequestScopes(t *testing.T) {
	ok := []TokenRequest{
		{Role: RoleAdmin},
		{Role: RoleReadOnly},
		{Role: RoleTenant, Policies: []string{"a", "b"}},
		{Role: RoleHost, Host: "node-1.example"},
		{Role: RoleHost, Host: "h", Policies: []string{"a"}},
	}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []struct {
		req  TokenRequest
		want string
	}{
		{TokenRequest{Role: RoleHost}, "needs the host label"},
		{TokenRequest{Role: RoleHost, Host: "a/b"}, "host name"},
		{TokenRequest{Role: RoleHost, Host: ".."}, "host name"},
		{TokenRequest{Role: RoleHost, Host: "h", Policies: []string{"a/b"}}, "policy name"},
		{TokenRequest{Role: RoleAdmin, Policies: []string{"a"}}, "only tenant and host tokens"},
		{TokenRequest{Role: RoleReadOnly, Policies: []string{"a"}}, "only tenant and host tokens"},
		{TokenRequest{Role: RoleTenant, Policies: []string{"a"}, Host: "h"}, "only host tokens"},
		{TokenRequest{Role: RoleAdmin, Host: "h"}, "only host tokens"},
		{TokenRequest{Role: RoleReadOnly, Host: "h"}, "only host tokens"},
		{TokenRequest{Role: RoleTenant}, "at least one policy"},
		{TokenRequest{Role: "root", Host: "h"}, "not one of"},
	}
	for _, c := range bad {
		err := c.req.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want ErrInvalid containing %q", c.req, err, c.want)
		}
	}
}
