// Package client is the one Go client of the volmaster REST API, used by
// volcli, volplugin and volcsi (volsupervisor works on etcd directly). Its
// request and response bodies are config's types, the ones volmaster
// decodes and encodes. Errors carry the server's kind:
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
	"sync/atomic"
	"time"

	"github.com/volplugin/volplugin/config"
)

// DefaultURL is volmaster's default listen address.
const DefaultURL = "http://127.0.0.1:9005"

// Client talks to one or more volmasters of the same cluster (they share
// etcd). It sticks to the one that answered last and moves to the next only
// when that one cannot be reached or answers 503 unavailable.
type Client struct {
	bases []*url.URL
	// cur is the index in bases of the volmaster calls go to first.
	cur     atomic.Int64
	hc      *http.Client
	token   string
	retries int
	backoff time.Duration
	timeout time.Duration
}

// DefaultRetries and DefaultBackoff are how often a call is tried again
// after every volmaster failed it, and the first wait between those rounds
// (doubled each time); WithRetries changes them.
const (
	DefaultRetries = 3
	DefaultBackoff = 200 * time.Millisecond
)

// DefaultCallTimeout bounds a call whose context has no deadline: a hung
// volmaster or a half-open connection must never stall a caller for good.
const DefaultCallTimeout = time.Minute

// Option adjusts a Client.
type Option func(*Client)

// WithToken sends a bearer token ("ID.SECRET") with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithRetries sets how often a call that may be repeated is tried again
// after every volmaster failed it (connection failure or 503), and the
// first backoff between those rounds (doubled each time).
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = n, backoff }
}

// SplitURLs splits a list of volmaster URLs separated by commas (the form
// of a repeated --volmaster flag joined, or of VOLMASTER) and drops blanks.
func SplitURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// New returns a client for the volmasters at list: one URL or several
// separated by commas ("" = DefaultURL). Every URL must be valid.
func New(list string, opts ...Option) (*Client, error) {
	raw := SplitURLs(list)
	if len(raw) == 0 {
		raw = []string{DefaultURL}
	}
	c := &Client{
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     time.Minute,
		}},
		retries: DefaultRetries,
		backoff: DefaultBackoff,
		timeout: DefaultCallTimeout,
	}
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("volmaster URL %q must look like http://host:port: %w", r, config.ErrInvalid)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.bases = append(c.bases, u)
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Each returns a client per volmaster URL of c, with c's settings and no
// failover: for what each volmaster keeps to itself (its audit ring).
func (c *Client) Each() []*Client {
	out := make([]*Client, len(c.bases))
	for i, b := range c.bases {
		out[i] = &Client{bases: []*url.URL{b}, hc: c.hc, token: c.token, retries: c.retries, backoff: c.backoff, timeout: c.timeout}
	}
	return out
}

// Current is the URL of the volmaster the next call goes to first.
func (c *Client) Current() string { return c.bases[c.cur.Load()].String() }

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
// Every call that may be repeated is retried on connection failures and
// 503s, on the next volmaster first; the body is a byte slice, so every
// attempt sends it whole. A POST or DELETE, which a plain repeat could do
// twice or answer with a false 409 or 404, carries an Idempotency-Key, the
// same on every attempt and every volmaster (they remember keys in the etcd
// they share), so a retry gets the first attempt's answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	kind := byMethod
	if method == http.MethodPost || method == http.MethodDelete {
		kind = keyedWrite
	}
	return c.doHeader(ctx, method, path, query, body, out, nil, kind)
}

// callKind says what a repeat of a request may do.
type callKind int

const (
	// byMethod: GET, HEAD and PUT may be repeated, anything else only if it
	// never reached a volmaster.
	byMethod callKind = iota
	// keyedWrite carries an Idempotency-Key: a repeat is answered with the
	// first attempt's answer.
	keyedWrite
	// readOnly changes nothing whatever its method (a query in a POST body).
	readOnly
	// idempotentWrite changes something, but a repeat changes nothing more
	// and is answered as well as the first (a mount lock release, an
	// import: create-if-absent): no Idempotency-Key, whose records cost
	// etcd writes, and repeated like a read.
	idempotentWrite
)

// doHeader is do that also stores the answer's headers in hdr (if not nil);
// kind says whether it carries an Idempotency-Key and may be repeated.
func (c *Client) doHeader(ctx context.Context, method, path string, query url.Values, body []byte, out any, hdr *http.Header, kind callKind) error {
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	key := ""
	if kind == keyedWrite {
		key = newIdempotencyKey()
	}
	n := int64(len(c.bases))
	wait := c.backoff
	var err error
	for round := 0; ; round++ {
		for range n {
			i := c.cur.Load()
			u := *c.bases[i]
			u.Path += path
			u.RawQuery = query.Encode()
			err = c.once(ctx, method, &u, body, out, hdr, key)
			if err == nil {
				return nil
			}
			if !errors.Is(err, config.ErrUnavailable) && ctx.Err() == nil {
				return err // an answer: another volmaster would give the same
			}
			// Unreachable, unavailable or too slow for this call: the
			// next call (or attempt) starts with the next volmaster. The
			// swap fails if a concurrent call moved on already.
			c.cur.CompareAndSwap(i, (i+1)%n)
			if ctx.Err() != nil || !repeatable(method, kind, err) {
				return err
			}
		}
		if round >= c.retries {
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

// repeatable says whether a failed attempt may be sent again: a read, a
// request that is idempotent by its method, one with an Idempotency-Key, or
// one that never reached a volmaster (the connection was not made). Anything
// else may have been done already, and doing it again is not ours to decide.
func repeatable(method string, kind callKind, err error) bool {
	switch {
	case kind != byMethod, method == http.MethodGet || method == http.MethodHead || method == http.MethodPut:
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) once(ctx context.Context, method string, target *url.URL, body []byte, out any, hdr *http.Header, key string) error {
	u, host := target.String(), target.Host
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
			return fmt.Errorf("volmaster at %s: %w", host, ctx.Err())
		}
		return fmt.Errorf("volmaster at %s is unreachable: %w: %w", host, err, config.ErrUnavailable)
	}
	defer resp.Body.Close()
	if hdr != nil {
		*hdr = resp.Header
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of volmaster at %s: %v: %w", host, err, config.ErrUnavailable)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		var eb config.ErrorBody
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
