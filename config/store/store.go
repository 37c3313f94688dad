// Package store persists the config types in etcd (v3 API) under the key
// layout of config.Keys. Every multi-key change is one transaction; creates
// are create-if-absent. Errors wrap the config sentinels (ErrNotFound,
// ErrExists, ErrInUse, ErrUnavailable for etcd failures).
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// maxTxnRetries bounds optimistic-concurrency loops (policy revisions).
const maxTxnRetries = 20

// Store reads and writes the suite's records in etcd.
type Store struct {
	cli     *clientv3.Client
	keys    config.Keys
	timeout time.Duration

	// faultBeforeMigrationCommit, if set, runs between planning a schema
	// migration step and committing it. Fault injection for tests only: it
	// lets a test change keys in that window.
	faultBeforeMigrationCommit func(context.Context)
}

// New returns a store using cli under the given key layout; each etcd call is
// bounded by timeout (config.DefaultEtcdTimeout if zero).
func New(cli *clientv3.Client, keys config.Keys, timeout time.Duration) *Store {
	if timeout <= 0 {
		timeout = config.DefaultEtcdTimeout
	}
	return &Store{cli: cli, keys: keys, timeout: timeout}
}

// Keys returns the key layout in use.
func (s *Store) Keys() config.Keys { return s.keys }

// Client returns the etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) txn(ctx context.Context, op string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		return nil, config.EtcdError(op, err)
	}
	return resp, nil
}

func (s *Store) get(ctx context.Context, op, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, config.EtcdError(op, err)
	}
	return resp, nil
}

// Dump returns every key and value under the prefix, for tests and backups.
func (s *Store) Dump(ctx context.Context) (map[string]string, error) {
	resp, err := s.get(ctx, "dump", s.keys.All(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, nil
}

// GetGlobal returns the global configuration, or the defaults if none was
// uploaded.
func (s *Store) GetGlobal(ctx context.Context) (config.Global, error) {
	resp, err := s.get(ctx, "get global", s.keys.Global())
	if err != nil {
		return config.Global{}, err
	}
	if len(resp.Kvs) == 0 {
		return config.DefaultGlobal(), nil
	}
	return decodeGlobal(resp.Kvs[0].Value)
}

func decodeGlobal(b []byte) (config.Global, error) {
	var g config.Global
	if err := json.Unmarshal(b, &g); err != nil {
		return config.Global{}, fmt.Errorf("stored global config is corrupt: %w", err)
	}
	if err := g.Normalize(); err != nil {
		return config.Global{}, fmt.Errorf("stored global config: %w", err)
	}
	return g, nil
}

// PutGlobal replaces the global configuration.
func (s *Store) PutGlobal(ctx context.Context, g config.Global) (int64, error) {
	if err := g.Normalize(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(g)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Put(ctx, s.keys.Global(), string(b))
	if err != nil {
		return 0, config.EtcdError("put global", err)
	}
	return resp.Header.Revision, nil
}

// WatchGlobal sends the current global configuration and then every change
// until ctx ends. A deleted or corrupt value is sent as the defaults. When the
// watch breaks (compaction, lost connection) it starts again from a fresh
// read, so no change is missed for long.
func (s *Store) WatchGlobal(ctx context.Context) <-chan config.Global {
	out := make(chan config.Global, 1)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			s.watchGlobalOnce(ctx, out)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}

func (s *Store) watchGlobalOnce(ctx context.Context, out chan<- config.Global) {
	send := func(g config.Global) bool {
		select {
		case out <- g:
			return true
		case <-ctx.Done():
			return false
		}
	}
	resp, err := s.get(ctx, "get global", s.keys.Global())
	if err != nil {
		return
	}
	cur := config.DefaultGlobal()
	if len(resp.Kvs) == 1 {
		if g, err := decodeGlobal(resp.Kvs[0].Value); err == nil {
			cur = g
		}
	}
	if !send(cur) {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range s.cli.Watch(wctx, s.keys.Global(), clientv3.WithRev(resp.Header.Revision+1)) {
		if wr.Err() != nil {
			return
		}
		for _, ev := range wr.Events {
			g := config.DefaultGlobal()
			if ev.Type == clientv3.EventTypePut {
				if d, err := decodeGlobal(ev.Kv.Value); err == nil {
					g = d
				}
			}
			if !send(g) {
				return
			}
		}
	}
}
