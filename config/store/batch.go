package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// BatchSize bounds the volumes one batched transaction covers: at four
// operations and three conditions each, a batch stays under etcd's default
// limit of 128 operations per transaction (--max-txn-ops).
const BatchSize = 25

// RefIntent is one volume's intent in a batched begin.
type RefIntent struct {
	Ref    config.VolumeRef
	Intent Intent
}

// BeginIntents is BeginIntent for several volumes in one transaction: every
// one of them begins, or none does. The transaction checks for each volume
// exactly what BeginIntent checks (it exists, no operation holds it, no
// operation cut short waits for recovery), plus guard. ok false with no
// error means a condition failed somewhere and nothing changed: the caller
// begins the volumes one by one to learn which and why. The volumes come
// back in the order of items.
func (s *Store) BeginIntents(ctx context.Context, items []RefIntent, h Holder, guard ...clientv3.Cmp) (vols []config.Volume, ok bool, err error) {
	if len(items) > BatchSize {
		return nil, false, fmt.Errorf("a batch of %d volumes, more than %d: %w", len(items), BatchSize, config.ErrInvalid)
	}
	cmps := make([]clientv3.Cmp, 0, 3*len(items)+len(guard))
	then := make([]clientv3.Op, 0, 4*len(items))
	for _, it := range items {
		puts, err := s.lockOps(it.Ref, it.Intent, h)
		if err != nil {
			return nil, false, err
		}
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(it.Ref)), ">", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(it.Ref)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.Intent(it.Ref)), "=", 0))
		then = append(then, puts...)
	}
	reads := len(then)
	for _, it := range items {
		then = append(then, clientv3.OpGet(s.keys.Volume(it.Ref)), clientv3.OpGet(s.keys.Runtime(it.Ref)))
	}
	resp, err := s.txn(ctx, fmt.Sprintf("begin %d operations", len(items)), append(cmps, guard...), then, nil)
	if err != nil || !resp.Succeeded {
		return nil, false, err
	}
	vols = make([]config.Volume, 0, len(items))
	for i := range items {
		var rt []byte
		if kvs := rangeKvs(resp, reads+2*i+1); len(kvs) == 1 {
			rt = kvs[0].Value
		}
		v, derr := DecodeVolume(rangeKvs(resp, reads+2*i)[0].Value, rt)
		if derr != nil {
			// Every lock was taken: give them all back.
			for _, it := range items {
				if _, rerr := s.ReleaseOp(context.WithoutCancel(ctx), it.Ref, h); rerr != nil {
					derr = errors.Join(derr, rerr)
				}
			}
			return nil, false, derr
		}
		vols = append(vols, v)
	}
	return vols, true, nil
}

// RefSnapshot is one volume's snapshot in a batched finish.
type RefSnapshot struct {
	Ref  config.VolumeRef
	Snap config.Snapshot
}

// FinishSnapshots is FinishSnapshot for several volumes in one transaction,
// all or none: each snapshot is recorded and its volume's operation lock
// (which h must still hold) and intent released, if guard holds. On success
// it also returns each volume's snapshot records after the change, oldest
// first, read in the same transaction: what a prune needs, without another
// read (nil for a volume whose records could not be decoded: read them).
// ok false with no error means a lock or the guard failed and nothing
// changed: the caller finishes them one by one.
func (s *Store) FinishSnapshots(ctx context.Context, items []RefSnapshot, h Holder, guard ...clientv3.Cmp) (lists [][]config.Snapshot, ok bool, err error) {
	refs := make([]config.VolumeRef, len(items))
	changes := make([]clientv3.Op, len(items))
	for i, it := range items {
		b, err := json.Marshal(it.Snap)
		if err != nil {
			return nil, false, err
		}
		refs[i], changes[i] = it.Ref, clientv3.OpPut(s.keys.Snapshot(it.Ref, it.Snap.Name), string(b))
	}
	resp, reads, err := s.finishBatch(ctx, fmt.Sprintf("record %d snapshots", len(items)), refs, changes, true, h, guard)
	if err != nil || resp == nil {
		return nil, false, err
	}
	lists = make([][]config.Snapshot, len(items))
	for i := range items {
		for _, kv := range rangeKvs(resp, reads+i) {
			var snap config.Snapshot
			if err := json.Unmarshal(kv.Value, &snap); err != nil {
				lists[i] = nil
				break
			}
			lists[i] = append(lists[i], snap)
		}
	}
	return lists, true, nil
}

// RefName names one snapshot of one volume in a batched prune.
type RefName struct {
	Ref  config.VolumeRef
	Snap string
}

// FinishPrunes is FinishPrune for several volumes in one transaction, all
// or none, as FinishSnapshots is for records.
func (s *Store) FinishPrunes(ctx context.Context, items []RefName, h Holder, guard ...clientv3.Cmp) (ok bool, err error) {
	refs := make([]config.VolumeRef, len(items))
	changes := make([]clientv3.Op, len(items))
	for i, it := range items {
		refs[i], changes[i] = it.Ref, clientv3.OpDelete(s.keys.Snapshot(it.Ref, it.Snap))
	}
	resp, _, err := s.finishBatch(ctx, fmt.Sprintf("prune %d snapshots", len(items)), refs, changes, false, h, guard)
	return resp != nil, err
}

// finishBatch applies change[i] to refs[i] and releases each one's
// operation lock (which h must hold) and intent, in one transaction that
// also checks guard; with lists, the Then branch ends with each volume's
// snapshot records (from index reads on). A nil response with no error
// means the transaction was refused.
func (s *Store) finishBatch(ctx context.Context, what string, refs []config.VolumeRef, changes []clientv3.Op, lists bool, h Holder, guard []clientv3.Cmp) (resp *clientv3.TxnResponse, reads int, err error) {
	if len(refs) > BatchSize {
		return nil, 0, fmt.Errorf("a batch of %d volumes, more than %d: %w", len(refs), BatchSize, config.ErrInvalid)
	}
	cmps := make([]clientv3.Cmp, 0, len(refs)+len(guard))
	then := make([]clientv3.Op, 0, 4*len(refs))
	for i, ref := range refs {
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(s.keys.OpLock(ref)), "=", h.Lease))
		then = append(then, changes[i])
		then = append(then, s.unlockOps(ref)...)
	}
	reads = len(then)
	if lists {
		for _, ref := range refs {
			then = append(then, clientv3.OpGet(s.keys.Snapshots(ref), clientv3.WithPrefix(),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)))
		}
	}
	resp, err = s.txn(ctx, what, append(cmps, guard...), then, nil)
	if err != nil || !resp.Succeeded {
		return nil, 0, err
	}
	return resp, reads, nil
}
