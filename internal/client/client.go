// Package client is the one Go client of the volmaster REST API, used by
// volcli, volplugin and volsupervisor. Errors carry the server's kind:
// errors.Is(err, config.ErrNotFound) and friends work across the wire, and a
// volmaster that cannot be reached is config.ErrUnavailable.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/volplugin/volplugin/config"
)

// DefaultURL is volmaster's default listen address.
const DefaultURL = "http://127.0.0.1:9005"

// Client talks to one volmaster.
type Client struct {
	base    *url.URL
	hc      *http.Client
	token   string
	retries int
	backoff time.Duration
	timeout time.Duration
}

// DefaultCallTimeout bounds a call whose context has no deadline: a hung
// volmaster or a half-open connection must never stall a caller for good.
const DefaultCallTimeout = time.Minute

// WithCallTimeout replaces DefaultCallTimeout.
func WithCallTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// Option adjusts a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client (for TLS settings, say).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sends a bearer token ("ID.SECRET") with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithRetries sets how often an idempotent call is retried after a
// connection failure or a 503, and the first backoff (doubled each time).
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = n, backoff }
}

// New returns a client for the volmaster at baseURL ("" = DefaultURL).
func New(baseURL string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("volmaster URL %q must look like http://host:port: %w", baseURL, config.ErrInvalid)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{
		base: u,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     time.Minute,
		}},
		retries: 3,
		backoff: 200 * time.Millisecond,
		timeout: DefaultCallTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Error is a failed API call. Unwrap yields the config sentinel for its code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel matching the error code, if any.
func (e *Error) Unwrap() error {
	if e.Status == http.StatusServiceUnavailable && e.Code == "" {
		return config.ErrUnavailable
	}
	return config.CodeError(e.Code)
}

// do sends one request and decodes a JSON answer into out (if not nil).
// Every call is retried on connection failures and 503s; the body is a byte
// slice, so every attempt sends it whole. A POST or DELETE, which a plain
// repeat could do twice or answer with a false 409 or 404, carries an
// Idempotency-Key, the same on every attempt, so volmaster answers a retry
// with the first attempt's answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	keyed := method == http.MethodPost || method == http.MethodDelete
	return c.doHeader(ctx, method, path, query, body, out, nil, keyed)
}

// doHeader is do that also stores the answer's headers in hdr (if not nil)
// and sends an Idempotency-Key if keyed.
func (c *Client) doHeader(ctx context.Context, method, path string, query url.Values, body []byte, out any, hdr *http.Header, keyed bool) error {
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	key := ""
	if keyed {
		key = newIdempotencyKey()
	}
	wait := c.backoff
	var err error
	for attempt := 0; ; attempt++ {
		err = c.once(ctx, method, u.String(), body, out, hdr, key)
		if err == nil || attempt >= c.retries || !errors.Is(err, config.ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) once(ctx context.Context, method, u string, body []byte, out any, hdr *http.Header, key string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key != "" {
		req.Header.Set(config.IdempotencyKeyHeader, key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("volmaster at %s: %w", c.base.Host, ctx.Err())
		}
		return fmt.Errorf("volmaster at %s is unreachable: %w: %w", c.base.Host, err, config.ErrUnavailable)
	}
	defer resp.Body.Close()
	if hdr != nil {
		*hdr = resp.Header
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of volmaster at %s: %v: %w", c.base.Host, err, config.ErrUnavailable)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			e.Code, e.Message = eb.Code, eb.Error
		} else {
			e.Message = fmt.Sprintf("volmaster answered %s", resp.Status)
		}
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, u, err)
	}
	return nil
}

func refPath(ref config.VolumeRef) string {
	return url.PathEscape(ref.Policy) + "/" + url.PathEscape(ref.Name)
}
