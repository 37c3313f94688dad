package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// ErrNotLeader marks a guarded change refused because the guard (a
// volsupervisor's leadership) no longer holds.
var ErrNotLeader = errors.New("not the leader any more")

// FinishSnapshot records a snapshot taken under the operation lock h holds
// and releases the lock, in one transaction that also checks guard.
func (s *Store) FinishSnapshot(ctx context.Context, ref config.VolumeRef, snap config.Snapshot, h Holder, guard ...clientv3.Cmp) error {
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	return s.finishOp(ctx, "record snapshot of "+ref.String(), ref, h, guard,
		clientv3.OpPut(s.keys.Snapshot(ref, snap.Name), string(b)))
}

// FinishPrune deletes the record of a snapshot removed under the operation
// lock and releases the lock, checking guard.
func (s *Store) FinishPrune(ctx context.Context, ref config.VolumeRef, snap string, h Holder, guard ...clientv3.Cmp) error {
	return s.finishOp(ctx, "prune snapshot of "+ref.String(), ref, h, guard,
		clientv3.OpDelete(s.keys.Snapshot(ref, snap)))
}

func (s *Store) finishOp(ctx context.Context, op string, ref config.VolumeRef, h Holder, guard []clientv3.Cmp, change clientv3.Op) error {
	key := s.keys.OpLock(ref)
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", h.Lease)}, guard...)
	resp, err := s.txn(ctx, op, cmps, append([]clientv3.Op{change}, s.unlockOps(ref)...), nil)
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		if len(guard) > 0 {
			return fmt.Errorf("%s: %w", op, ErrNotLeader)
		}
		return fmt.Errorf("%s: operation lock lost (lease expired?): %w", op, config.ErrInUse)
	}
	return nil
}

// ListSnapshots returns a volume's snapshot records, oldest first.
func (s *Store) ListSnapshots(ctx context.Context, ref config.VolumeRef) ([]config.Snapshot, error) {
	resp, err := s.get(ctx, "list snapshots of "+ref.String(), s.keys.Snapshots(ref), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.Snapshot, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var snap config.Snapshot
		if err := json.Unmarshal(kv.Value, &snap); err != nil {
			return nil, fmt.Errorf("snapshot record %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, snap)
	}
	return out, nil
}
