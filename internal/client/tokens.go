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

// Audit returns the last mutating requests volmaster served.
func (c *Client) Audit(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/v1/audit", nil, nil, &out)
}
