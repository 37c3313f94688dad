package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// PolicyRecord is how a policy is stored, both as the current policy and as
// each numbered revision.
type PolicyRecord struct {
	Revision int64         `json:"revision"`
	Time     time.Time     `json:"time"`
	Policy   config.Policy `json:"policy"`
}

// DecodePolicyRecord parses a stored policy value.
func DecodePolicyRecord(b []byte) (PolicyRecord, error) {
	var r PolicyRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return PolicyRecord{}, fmt.Errorf("stored policy is corrupt: %w", err)
	}
	return r, nil
}

// PolicyHead is the stored value of a policy's head (schema 2): the number
// of its latest revision, kept after the policy is deleted.
type PolicyHead struct {
	Revision int64 `json:"revision"`
}

// PutPolicy stores p as its policy's new current version and as the next
// numbered revision, and moves the policy's head to it, in one transaction.
// It returns the revision number and the etcd revision of the write.
func (s *Store) PutPolicy(ctx context.Context, p config.Policy, now time.Time) (PolicyRecord, int64, error) {
	if err := p.Normalize(); err != nil {
		return PolicyRecord{}, 0, err
	}
	headKey := s.keys.PolicyHead(p.Name)
	behind := false
	for range maxTxnRetries {
		n, headRev, err := s.lastRevision(ctx, p.Name, behind)
		if err != nil {
			return PolicyRecord{}, 0, err
		}
		rec := PolicyRecord{Revision: n + 1, Time: now.UTC(), Policy: p}
		b, err := json.Marshal(rec)
		if err != nil {
			return PolicyRecord{}, 0, err
		}
		head, err := json.Marshal(PolicyHead{Revision: rec.Revision})
		if err != nil {
			return PolicyRecord{}, 0, err
		}
		revKey := s.keys.PolicyRevision(p.Name, rec.Revision)
		resp, err := s.txn(ctx, "put policy "+p.Name,
			[]clientv3.Cmp{
				// The head is the optimistic lock between uploads of one policy;
				// the revision key check keeps a number from ever being reused.
				clientv3.Compare(clientv3.ModRevision(headKey), "=", headRev),
				clientv3.Compare(clientv3.CreateRevision(revKey), "=", 0),
			},
			[]clientv3.Op{clientv3.OpPut(revKey, string(b)), clientv3.OpPut(s.keys.Policy(p.Name), string(b)), clientv3.OpPut(headKey, string(head))},
			[]clientv3.Op{clientv3.OpGet(revKey, clientv3.WithCountOnly())})
		if err != nil {
			return PolicyRecord{}, 0, err
		}
		if resp.Succeeded {
			return rec, resp.Header.Revision, nil
		}
		// Either another upload moved the head (read it again), or the
		// number is taken although the head did not say so: a schema-1
		// volmaster still running during an upgrade wrote revisions without
		// moving the head. Then take the number from the history once.
		behind = resp.Responses[0].GetResponseRange().Count > 0
	}
	return PolicyRecord{}, 0, fmt.Errorf("put policy %s: too many concurrent uploads: %w", p.Name, config.ErrInUse)
}

// lastRevision returns the number of a policy's latest revision from its
// head, with the head's etcd mod revision (0 if there is none). With
// fromHistory it also reads the last revision key and returns the larger
// number: the head may be behind a schema-1 writer.
func (s *Store) lastRevision(ctx context.Context, name string, fromHistory bool) (int64, int64, error) {
	ops := []clientv3.Op{clientv3.OpGet(s.keys.PolicyHead(name))}
	if fromHistory {
		ops = append(ops, clientv3.OpGet(s.keys.PolicyRevisions(name), append(clientv3.WithLastKey(), clientv3.WithKeysOnly())...))
	}
	resp, err := s.txn(ctx, "put policy "+name, nil, ops, nil)
	if err != nil {
		return 0, 0, err
	}
	var n, headRev int64
	if kvs := rangeKvs(resp, 0); len(kvs) == 1 {
		var h PolicyHead
		if err := json.Unmarshal(kvs[0].Value, &h); err != nil {
			return 0, 0, fmt.Errorf("stored head of policy %s is corrupt: %w", name, err)
		}
		n, headRev = h.Revision, kvs[0].ModRevision
	}
	if fromHistory {
		if kvs := rangeKvs(resp, 1); len(kvs) == 1 {
			if last, ok := s.keys.ParsePolicyRevision(name, string(kvs[0].Key)); ok && last > n {
				n = last
			}
		}
	}
	return n, headRev, nil
}

// GetPolicy returns the current version of a policy.
func (s *Store) GetPolicy(ctx context.Context, name string) (PolicyRecord, error) {
	resp, err := s.get(ctx, "get policy "+name, s.keys.Policy(name))
	if err != nil {
		return PolicyRecord{}, err
	}
	if len(resp.Kvs) == 0 {
		return PolicyRecord{}, fmt.Errorf("policy %s: %w", name, config.ErrNotFound)
	}
	return DecodePolicyRecord(resp.Kvs[0].Value)
}

// ListPolicies returns every current policy, sorted by name.
func (s *Store) ListPolicies(ctx context.Context) ([]PolicyRecord, error) {
	resp, err := s.get(ctx, "list policies", s.keys.Policies(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]PolicyRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, err := DecodePolicyRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// DeletePolicy removes the current policy. Its volumes and its revision
// history stay.
func (s *Store) DeletePolicy(ctx context.Context, name string) (int64, error) {
	key := s.keys.Policy(name)
	resp, err := s.txn(ctx, "delete policy "+name,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(key)}, nil)
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("policy %s: %w", name, config.ErrNotFound)
	}
	return resp.Header.Revision, nil
}

// PolicyRevisions lists a policy's revisions, oldest first.
func (s *Store) PolicyRevisions(ctx context.Context, name string) ([]config.PolicyRevision, error) {
	resp, err := s.get(ctx, "list revisions of "+name, s.keys.PolicyRevisions(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("policy %s has no revisions: %w", name, config.ErrNotFound)
	}
	out := make([]config.PolicyRevision, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, err := DecodePolicyRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, config.PolicyRevision{Revision: r.Revision, Time: r.Time})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}

// PolicyRevision returns one revision of a policy.
func (s *Store) PolicyRevision(ctx context.Context, name string, rev int64) (PolicyRecord, error) {
	key := s.keys.PolicyRevision(name, rev)
	resp, err := s.get(ctx, "get revision", key)
	if err != nil {
		return PolicyRecord{}, err
	}
	if len(resp.Kvs) == 0 {
		return PolicyRecord{}, fmt.Errorf("policy %s revision %d: %w", name, rev, config.ErrNotFound)
	}
	return DecodePolicyRecord(resp.Kvs[0].Value)
}

// policyName returns the policy a Policies key names.
func (s *Store) policyName(key string) (string, bool) {
	n, ok := strings.CutPrefix(key, s.keys.Policies())
	return n, ok && n != "" && !strings.Contains(n, "/")
}
