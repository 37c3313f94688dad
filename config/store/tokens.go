package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken stores a new token and returns it with its secret, which is
// not kept: the bearer string is "<id>.<secret>".
func (s *Store) CreateToken(ctx context.Context, req config.TokenRequest, now time.Time) (config.NewToken, error) {
	if err := req.Validate(); err != nil {
		return config.NewToken{}, err
	}
	id, secret := randomHex(8), randomHex(24)
	t := config.Token{ID: id, Hash: hashSecret(secret), Role: req.Role, Policies: req.Policies,
		Host: req.Host, Description: req.Description, Created: now.UTC()}
	if req.TTL != 0 {
		t.Expires = t.Created.Add(req.TTL.D())
	}
	b, err := json.Marshal(t)
	if err != nil {
		return config.NewToken{}, err
	}
	resp, err := s.txn(ctx, "create token",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.keys.Token(id)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(s.keys.Token(id), string(b))}, nil)
	if err != nil {
		return config.NewToken{}, err
	}
	if !resp.Succeeded {
		return config.NewToken{}, fmt.Errorf("token ID collision, try again: %w", config.ErrExists)
	}
	t.Hash = ""
	return config.NewToken{Token: t, Secret: id + "." + secret}, nil
}

// Authenticate returns the token a bearer string "<id>.<secret>" stands for;
// ErrNotFound for an unknown or wrong one, or one expired at now.
func (s *Store) Authenticate(ctx context.Context, bearer string, now time.Time) (config.Token, error) {
	id, secret, ok := strings.Cut(bearer, ".")
	if !ok || len(id) != 16 || secret == "" {
		return config.Token{}, fmt.Errorf("malformed token: %w", config.ErrNotFound)
	}
	resp, err := s.get(ctx, "read token", s.keys.Token(id))
	if err != nil {
		return config.Token{}, err
	}
	if len(resp.Kvs) == 0 {
		return config.Token{}, fmt.Errorf("unknown token: %w", config.ErrNotFound)
	}
	var t config.Token
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return config.Token{}, fmt.Errorf("stored token %s is corrupt: %w", id, err)
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hashSecret(secret))) != 1 {
		return config.Token{}, fmt.Errorf("wrong token secret: %w", config.ErrNotFound)
	}
	if t.Expired(now) {
		return config.Token{}, fmt.Errorf("token %s expired at %s: %w", t.ID, t.Expires.Format(time.RFC3339), config.ErrExpired)
	}
	t.Hash = ""
	return t, nil
}

// ListTokens returns every token without its hash.
func (s *Store) ListTokens(ctx context.Context) ([]config.Token, error) {
	resp, err := s.get(ctx, "list tokens", s.keys.Tokens(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.Token, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var t config.Token
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return nil, fmt.Errorf("stored token %s is corrupt: %w", kv.Key, err)
		}
		t.Hash = ""
		out = append(out, t)
	}
	return out, nil
}

// RevokeToken deletes a token.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ctx, s.keys.Token(id))
	if err != nil {
		return config.EtcdError("revoke token", err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("token %s: %w", id, config.ErrNotFound)
	}
	return nil
}
