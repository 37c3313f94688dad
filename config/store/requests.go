package store

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// Request is what volmaster remembers of a request sent with an
// Idempotency-Key: while it runs, who runs it; once it succeeded, its answer.
type Request struct {
	// Fingerprint is a digest of the method, path, query and body, so a key
	// reused for another request is refused rather than answered wrongly.
	Fingerprint string `json:"fingerprint"`
	Owner       string `json:"owner,omitempty"`
	Done        bool   `json:"done,omitempty"`
	Status      int    `json:"status,omitempty"`
	// Header holds the answer's headers the handler set.
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
}

// BeginRequest claims id for a request that starts now: a pending record on
// lease (the running volmaster's, so it goes if that volmaster dies). If id
// is claimed already it returns that record instead, with its revision.
func (s *Store) BeginRequest(ctx context.Context, id string, rec Request, lease clientv3.LeaseID) (*Request, int64, error) {
	key := s.keys.Request(id)
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, 0, fmt.Errorf("encode request record: %w", err)
	}
	resp, err := s.txn(ctx, "claim idempotency key",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, string(b), clientv3.WithLease(lease))},
		[]clientv3.Op{clientv3.OpGet(key)})
	if err != nil {
		return nil, 0, err
	}
	if resp.Succeeded {
		return nil, resp.Header.Revision, nil
	}
	kvs := rangeKvs(resp, 0)
	if len(kvs) == 0 {
		// Gone between the compare and the get: whoever retries claims it.
		return nil, 0, fmt.Errorf("idempotency key record changed while read: %w", config.ErrBusy)
	}
	var got Request
	if err := json.Unmarshal(kvs[0].Value, &got); err != nil {
		return nil, 0, fmt.Errorf("decode request record: %w", err)
	}
	return &got, kvs[0].ModRevision, nil
}

// FinishRequest stores the answer of the request that claimed id at rev,
// on lease (which bounds how long it is replayed). A record changed
// meanwhile is left alone.
func (s *Store) FinishRequest(ctx context.Context, id string, rev int64, rec Request, lease clientv3.LeaseID) error {
	key := s.keys.Request(id)
	rec.Done = true
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode request record: %w", err)
	}
	_, err = s.txn(ctx, "store idempotent answer",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpPut(key, string(b), clientv3.WithLease(lease))}, nil)
	return err
}

// AbandonRequest drops the claim on id made at rev, so that a retry runs the
// request again (it failed, and a failed request changed nothing).
func (s *Store) AbandonRequest(ctx context.Context, id string, rev int64) error {
	key := s.keys.Request(id)
	_, err := s.txn(ctx, "drop idempotency key",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpDelete(key)}, nil)
	return err
}

// WaitRequest blocks until the record of id changes from revision rev (its
// first request finished, failed or its volmaster died) or ctx ends.
func (s *Store) WaitRequest(ctx context.Context, id string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range s.cli.Watch(wctx, s.keys.Request(id), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return config.EtcdError("watch idempotency key", err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch of idempotency key closed: %w", config.ErrUnavailable)
}
