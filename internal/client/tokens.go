package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/volplugin/volplugin/config"
)

// CreateToken creates a token; the answer holds its secret, shown only now.
func (c *Client) CreateToken(ctx context.Context, req config.TokenRequest) (config.NewToken, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return config.NewToken{}, err
	}
	var out config.NewToken
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &out)
}

// Tokens lists every token (without secrets).
func (c *Client) Tokens(ctx context.Context) ([]config.Token, error) {
	var out []config.Token
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out)
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}

// Audit returns volmaster's kept audit entries, oldest first; with refused,
// the requests it refused before they ran (admin only).
func (c *Client) Audit(ctx context.Context, refused bool) ([]config.AuditEntry, error) {
	var out []config.AuditEntry
	var q url.Values
	if refused {
		q = url.Values{"refused": {"true"}}
	}
	return out, c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out)
}
