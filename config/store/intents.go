package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// Intent says what the operation holding a volume's operation lock set out
// to do. It is written in the transaction that takes the lock and deleted in
// every transaction that drops it, but it hangs on no lease: when the holder
// dies half-way (kill -9 of volmaster, a volsupervisor leader's crash) its
// lock expires with its lease and the intent stays, naming an operation cut
// short. Recovery (volmaster) takes the lock over (TakeOver) and finishes or
// undoes it; until then no new mount lock is granted on the volume.
type Intent struct {
	Op    string    `json:"op"`
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
	// Snapshot is the snapshot a snapshot or prune works on.
	Snapshot string `json:"snapshot,omitempty"`
	// BackendSnapshot is the backend's name for a pruned snapshot when it
	// is not Snapshot (config.Snapshot.Backend).
	BackendSnapshot string `json:"backend-snapshot,omitempty"`
	// Size is the size a resize grows to.
	Size string `json:"size,omitempty"`
	// From names the snapshot a create copies ("policy/volume@snapshot").
	From string `json:"from,omitempty"`
	// Handle is the backend's trash handle of the image a remove moved to
	// the trash (SetIntentHandle) or a restore takes back from it.
	Handle string `json:"handle,omitempty"`
}

// Interrupted is an intent whose operation lock is gone.
type Interrupted struct {
	Ref    config.VolumeRef
	Intent Intent
	// Rev is the intent's mod revision, for TakeOver.
	Rev int64
}

// lockOps are the puts that take ref's operation lock for intent in on h's
// lease, with the intent beside it.
func (s *Store) lockOps(ref config.VolumeRef, in Intent, h Holder) ([]clientv3.Op, error) {
	now := time.Now().UTC()
	lb, err := json.Marshal(OpLock{Op: in.Op, Owner: h.Owner, Since: now})
	if err != nil {
		return nil, err
	}
	in.Owner, in.Since = h.Owner, now
	ib, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return []clientv3.Op{
		clientv3.OpPut(s.keys.OpLock(ref), string(lb), clientv3.WithLease(h.Lease)),
		clientv3.OpPut(s.keys.Intent(ref), string(ib)),
	}, nil
}

// unlockOps drop ref's operation lock and its intent.
func (s *Store) unlockOps(ref config.VolumeRef) []clientv3.Op {
	return []clientv3.Op{clientv3.OpDelete(s.keys.OpLock(ref)), clientv3.OpDelete(s.keys.Intent(ref))}
}

// ListInterrupted returns the operations cut short: intents whose operation
// lock is gone (its holder's lease expired). One read, no write.
func (s *Store) ListInterrupted(ctx context.Context) ([]Interrupted, error) {
	resp, err := s.txn(ctx, "list interrupted operations", nil, []clientv3.Op{
		clientv3.OpGet(s.keys.Intents(), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.OpLocks(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	}, nil)
	if err != nil {
		return nil, err
	}
	locked := map[config.VolumeRef]bool{}
	for _, kv := range rangeKvs(resp, 1) {
		if ref, ok := s.keys.ParseRef(s.keys.OpLocks(), string(kv.Key)); ok {
			locked[ref] = true
		}
	}
	var out []Interrupted
	for _, kv := range rangeKvs(resp, 0) {
		ref, ok := s.keys.ParseRef(s.keys.Intents(), string(kv.Key))
		if !ok || locked[ref] {
			continue
		}
		var in Intent
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			in = Intent{Op: "unknown"}
		}
		out = append(out, Interrupted{Ref: ref, Intent: in, Rev: kv.ModRevision})
	}
	return out, nil
}

// TakeOver takes the operation lock of an interrupted operation on h's
// lease, provided its intent is still the one listed and no lock exists, and
// returns the volume's record (found false if it is gone). The intent stays
// until the recovery drops the lock (ReleaseOp, or a Finish* call). If
// another recovery took it first, or the intent changed, the error wraps
// config.ErrInUse.
func (s *Store) TakeOver(ctx context.Context, it Interrupted, h Holder) (v config.Volume, found bool, err error) {
	ref := it.Ref
	b, err := json.Marshal(OpLock{Op: "recover " + it.Intent.Op, Owner: h.Owner, Since: time.Now().UTC()})
	if err != nil {
		return config.Volume{}, false, err
	}
	resp, err := s.txn(ctx, "take over the interrupted "+it.Intent.Op+" of "+ref.String(),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.keys.Intent(ref)), "=", it.Rev),
			clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
		},
		[]clientv3.Op{
			clientv3.OpPut(s.keys.OpLock(ref), string(b), clientv3.WithLease(h.Lease)),
			clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Runtime(ref)),
		}, nil)
	if err != nil {
		return config.Volume{}, false, err
	}
	if !resp.Succeeded {
		return config.Volume{}, false, fmt.Errorf("the interrupted %s of %s: %w", it.Intent.Op, ref, errRaced)
	}
	kvs := rangeKvs(resp, 1)
	if len(kvs) == 0 {
		return config.Volume{}, false, nil
	}
	var rt []byte
	if r := rangeKvs(resp, 2); len(r) == 1 {
		rt = r[0].Value
	}
	v, err = DecodeVolume(kvs[0].Value, rt)
	return v, err == nil, err
}

// ReleaseOpKeepIntent drops the operation lock h holds but keeps the intent,
// so the operation is listed as interrupted again (a recovery that failed is
// tried again later).
func (s *Store) ReleaseOpKeepIntent(ctx context.Context, ref config.VolumeRef, h Holder) (int64, error) {
	key := s.keys.OpLock(ref)
	resp, err := s.txn(ctx, "release lock of "+ref.String(),
		[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", h.Lease)},
		[]clientv3.Op{clientv3.OpDelete(key)}, nil)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// SetIntentHandle records in the intent of the remove h holds the trash
// handle of the image it moved (before its records follow), so that a
// remove cut short there is undone: the image restored from the trash.
func (s *Store) SetIntentHandle(ctx context.Context, ref config.VolumeRef, h Holder, handle string) error {
	resp, err := s.get(ctx, "read intent of "+ref.String(), s.keys.Intent(ref))
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("intent of %s: %w", ref, config.ErrNotFound)
	}
	var in Intent
	if err := json.Unmarshal(resp.Kvs[0].Value, &in); err != nil {
		return fmt.Errorf("intent of %s is corrupt: %w", ref, err)
	}
	in.Handle = handle
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	tr, err := s.txn(ctx, "record trash handle of "+ref.String(),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.LeaseValue(s.keys.OpLock(ref)), "=", h.Lease),
			clientv3.Compare(clientv3.ModRevision(s.keys.Intent(ref)), "=", resp.Kvs[0].ModRevision),
		},
		[]clientv3.Op{clientv3.OpPut(s.keys.Intent(ref), string(b))}, nil)
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return fmt.Errorf("record trash handle of %s: operation lock lost (lease expired?): %w", ref, config.ErrInUse)
	}
	return nil
}
