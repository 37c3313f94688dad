package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// OpLock records which operation holds a volume's operation lock. It lives
// on its holder's lease, so a crashed holder's lock expires.
type OpLock struct {
	Op    string    `json:"op"`
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
}

// Holder identifies who takes operation locks: a lease (kept alive by the
// holder) and a human-readable owner name.
type Holder struct {
	Lease clientv3.LeaseID
	Owner string
}

func (s *Store) encodeVolume(v config.Volume) (rec, rt string, err error) {
	runtime := v.Runtime
	v.Runtime = config.RuntimeOptions{}
	b, err := json.Marshal(v)
	if err != nil {
		return "", "", err
	}
	r, err := json.Marshal(runtime)
	if err != nil {
		return "", "", err
	}
	return string(b), string(r), nil
}

// DecodeVolume parses a stored volume record and, if rt is not nil, its
// runtime record.
func DecodeVolume(rec, rt []byte) (config.Volume, error) {
	var v config.Volume
	if err := json.Unmarshal(rec, &v); err != nil {
		return config.Volume{}, fmt.Errorf("stored volume is corrupt: %w", err)
	}
	if rt != nil {
		if err := json.Unmarshal(rt, &v.Runtime); err != nil {
			return config.Volume{}, fmt.Errorf("stored runtime of %s is corrupt: %w", v.Ref(), err)
		}
	}
	return v, nil
}

// CreateVolume writes the record and runtime of a new volume and takes its
// operation lock, all only if the volume does not exist (ErrExists). The
// caller creates the image next and then calls ReleaseOp, or RollbackCreate
// if that fails.
func (s *Store) CreateVolume(ctx context.Context, v config.Volume, h Holder) (int64, error) {
	return s.CreateVolumeWithin(ctx, v, h, config.Limits{})
}

// quotaRetries bounds how often a create under a volume count or total size
// limit is tried again when another volume of the policy changed between
// the count and the write.
const quotaRetries = 5

// CreateVolumeWithin is CreateVolume that also keeps the policy's volumes
// within lim's count and total size: the policy's records are counted and
// the write commits only if none of them changed since, so two creates at
// once cannot both take the last place.
func (s *Store) CreateVolumeWithin(ctx context.Context, v config.Volume, h Holder, lim config.Limits) (int64, error) {
	return s.CreateVolumeFrom(ctx, v, h, lim, "")
}

// CreateVolumeFrom is CreateVolumeWithin for a volume whose image is copied
// from snapshot from ("policy/volume@snapshot", "" for a new image): its
// intent says so, because a copy cut short is undone even if its image
// exists.
func (s *Store) CreateVolumeFrom(ctx context.Context, v config.Volume, h Holder, lim config.Limits, from string) (int64, error) {
	ref := v.Ref()
	rec, rt, err := s.encodeVolume(v)
	if err != nil {
		return 0, err
	}
	lockPuts, err := s.lockOps(ref, Intent{Op: "create", From: from}, h)
	if err != nil {
		return 0, err
	}
	size, err := v.SizeBytes()
	if err != nil {
		return 0, err
	}
	for range quotaRetries {
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.Intent(ref)), "=", 0),
		}
		if lim.MaxVolumes > 0 || lim.MaxTotalSize != "" {
			prefix := s.keys.VolumesOf(ref.Policy)
			resp, err := s.get(ctx, "count volumes of "+ref.Policy, prefix, clientv3.WithPrefix())
			if err != nil {
				return 0, err
			}
			var total int64
			for _, kv := range resp.Kvs {
				var other config.Volume
				if json.Unmarshal(kv.Value, &other) == nil {
					n, _ := other.SizeBytes()
					total += n
				}
			}
			if err := lim.CheckCount(len(resp.Kvs), total, size); err != nil {
				return 0, fmt.Errorf("volume %s: %w", ref, err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(prefix), "<", resp.Header.Revision+1).WithPrefix())
		}
		resp, err := s.txn(ctx, "create volume "+ref.String(), cmps,
			append([]clientv3.Op{clientv3.OpPut(s.keys.Volume(ref), rec), clientv3.OpPut(s.keys.Runtime(ref), rt)}, lockPuts...),
			[]clientv3.Op{clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.OpLock(ref)), clientv3.OpGet(s.keys.Intent(ref))})
		if err != nil {
			return 0, err
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		// An intent left without its volume (a force-removed volume whose
		// operation was cut short) goes with the next recovery round.
		if len(rangeKvs(resp, 0)) > 0 || len(rangeKvs(resp, 1)) > 0 || len(rangeKvs(resp, 2)) > 0 {
			return 0, fmt.Errorf("volume %s: %w", ref, config.ErrExists)
		}
		// Another volume of the policy changed since the count: count again.
	}
	return 0, fmt.Errorf("volume %s: the policy's volumes kept changing while counted for its limits: %w", ref, config.ErrBusy)
}

// ReleaseOp drops the operation lock and its intent if h still holds it.
func (s *Store) ReleaseOp(ctx context.Context, ref config.VolumeRef, h Holder) (int64, error) {
	key := s.keys.OpLock(ref)
	resp, err := s.txn(ctx, "release lock of "+ref.String(),
		[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", h.Lease)},
		s.unlockOps(ref), nil)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// FinishResize stores v's record (grown) and drops the operation lock in one
// transaction, provided h still holds the lock; it returns the revision. A
// host may mark the volume formatted meanwhile (MarkFormatted): that mark is
// kept, so the write is conditional on the record read here.
func (s *Store) FinishResize(ctx context.Context, v config.Volume, h Holder) (int64, error) {
	ref := v.Ref()
	key := s.keys.OpLock(ref)
	for attempt := 0; ; attempt++ {
		cur, err := s.txn(ctx, "read volume "+ref.String(), nil, []clientv3.Op{clientv3.OpGet(s.keys.Volume(ref))}, nil)
		if err != nil {
			return 0, err
		}
		var modRev int64
		if kvs := rangeKvs(cur, 0); len(kvs) == 1 {
			modRev = kvs[0].ModRevision
			if old, err := DecodeVolume(kvs[0].Value, nil); err == nil && !v.Formatted() {
				v.FormattedAt = old.FormattedAt
			}
		}
		rec, _, err := s.encodeVolume(v)
		if err != nil {
			return 0, err
		}
		resp, err := s.txn(ctx, "resize volume "+ref.String(),
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.LeaseValue(key), "=", h.Lease),
				clientv3.Compare(clientv3.ModRevision(s.keys.Volume(ref)), "=", modRev),
			},
			append([]clientv3.Op{clientv3.OpPut(s.keys.Volume(ref), rec)}, s.unlockOps(ref)...),
			[]clientv3.Op{clientv3.OpGet(key)})
		if err != nil {
			return 0, err
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		if l := rangeKvs(resp, 0); len(l) == 0 || clientv3.LeaseID(l[0].Lease) != h.Lease {
			return 0, fmt.Errorf("resize volume %s: operation lock lost (lease expired?): %w", ref, config.ErrInUse)
		}
		// Only the record changed: a host marked it formatted. Again.
		if attempt >= maxRecordRetries {
			return 0, fmt.Errorf("resize volume %s: %w", ref, errRaced)
		}
	}
}

// maxRecordRetries bounds how often a conditional record update is tried
// again after the record changed under it.
const maxRecordRetries = 10

// MarkFormatted records that the volume's filesystem was made (its first
// mkfs succeeded on a host), at time at: one transaction conditional on the
// record being the one read, so it writes nothing to a volume removed
// meanwhile (ErrNotFound). createdAt, if not zero, must be the record's: a
// volume removed and created again under the same name is not the one the
// host formatted (ErrNotFound too). A volume already marked keeps its mark
// and nothing is written (revision 0): the call is idempotent.
func (s *Store) MarkFormatted(ctx context.Context, ref config.VolumeRef, createdAt, at time.Time) (config.Volume, int64, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.txn(ctx, "read volume "+ref.String(), nil, []clientv3.Op{clientv3.OpGet(s.keys.Volume(ref))}, nil)
		if err != nil {
			return config.Volume{}, 0, err
		}
		kvs := rangeKvs(cur, 0)
		if len(kvs) == 0 {
			return config.Volume{}, 0, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
		}
		v, err := DecodeVolume(kvs[0].Value, nil)
		if err != nil {
			return config.Volume{}, 0, err
		}
		if !createdAt.IsZero() && !v.CreatedAt.Equal(createdAt) {
			return config.Volume{}, 0, fmt.Errorf("volume %s was created at %s, not %s (removed and created again?): %w",
				ref, v.CreatedAt.Format(time.RFC3339Nano), createdAt.Format(time.RFC3339Nano), config.ErrNotFound)
		}
		if v.Formatted() {
			return v, 0, nil
		}
		v.FormattedAt = at.UTC()
		rec, _, err := s.encodeVolume(v)
		if err != nil {
			return config.Volume{}, 0, err
		}
		resp, err := s.txn(ctx, "mark volume "+ref.String()+" formatted",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.keys.Volume(ref)), "=", kvs[0].ModRevision)},
			[]clientv3.Op{clientv3.OpPut(s.keys.Volume(ref), rec)}, nil)
		if err != nil {
			return config.Volume{}, 0, err
		}
		if resp.Succeeded {
			return v, resp.Header.Revision, nil
		}
		// The record changed (a resize finished, or it went): read it again.
		if attempt >= maxRecordRetries {
			return config.Volume{}, 0, fmt.Errorf("mark volume %s formatted: %w", ref, errRaced)
		}
	}
}

// RollbackCreate deletes the record, runtime and lock written by CreateVolume,
// provided h still holds the lock.
func (s *Store) RollbackCreate(ctx context.Context, ref config.VolumeRef, h Holder) (int64, error) {
	return s.deleteUnderLock(ctx, "roll back create of "+ref.String(), ref, h)
}

func (s *Store) deleteUnderLock(ctx context.Context, op string, ref config.VolumeRef, h Holder) (int64, error) {
	key := s.keys.OpLock(ref)
	resp, err := s.txn(ctx, op,
		[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", h.Lease)},
		append(s.deleteVolumeOps(ref), s.unlockOps(ref)...),
		nil)
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: operation lock lost (lease expired?): %w", op, config.ErrInUse)
	}
	return resp.Header.Revision, nil
}

// GetVolume returns a volume with its runtime options.
func (s *Store) GetVolume(ctx context.Context, ref config.VolumeRef) (config.Volume, error) {
	resp, err := s.txn(ctx, "get volume "+ref.String(), nil,
		[]clientv3.Op{clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Runtime(ref))}, nil)
	if err != nil {
		return config.Volume{}, err
	}
	vol := resp.Responses[0].GetResponseRange().Kvs
	if len(vol) == 0 {
		return config.Volume{}, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
	}
	var rt []byte
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
		rt = kvs[0].Value
	}
	return DecodeVolume(vol[0].Value, rt)
}

// BeginRemove takes the operation lock of a volume that exists, is not
// mounted anywhere, is not busy and whose usage record is still at
// usageRev (its mod revision when the caller applied config.Decide to it,
// 0 for none: GetUsage); it returns the volume. So a mount, an unmount or a
// host's death after the caller's check makes the removal fail (ErrInUse)
// instead of acting on what was true before. The caller destroys the image
// and then calls FinishRemove, or ReleaseOp if that fails.
func (s *Store) BeginRemove(ctx context.Context, ref config.VolumeRef, h Holder, usageRev int64, guard ...clientv3.Cmp) (config.Volume, error) {
	return s.beginOp(ctx, ref, Intent{Op: "remove"}, h, true, usageRev, guard)
}

// BeginOp takes the operation lock of an existing volume that no other
// operation holds (and, if unmounted is set, that no host has mounted), and
// returns the volume. guard adds conditions that must hold too, such as a
// volsupervisor's leadership; if one fails the error wraps ErrNotLeader.
func (s *Store) BeginOp(ctx context.Context, ref config.VolumeRef, op string, h Holder, unmounted bool, guard ...clientv3.Cmp) (config.Volume, error) {
	return s.beginOp(ctx, ref, Intent{Op: op}, h, unmounted, -1, guard)
}

// BeginIntent is BeginOp with an intent that says more than the operation's
// name (the snapshot it takes or prunes, the size it grows to), for the
// recovery of an operation cut short.
func (s *Store) BeginIntent(ctx context.Context, ref config.VolumeRef, in Intent, h Holder, guard ...clientv3.Cmp) (config.Volume, error) {
	return s.beginOp(ctx, ref, in, h, false, -1, guard)
}

// beginOp is BeginOp; a usageRev of 0 or more must also be the usage
// record's mod revision.
func (s *Store) beginOp(ctx context.Context, ref config.VolumeRef, in Intent, h Holder, unmounted bool, usageRev int64, guard []clientv3.Cmp) (config.Volume, error) {
	op := in.Op
	lockPuts, err := s.lockOps(ref, in, h)
	if err != nil {
		return config.Volume{}, err
	}
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
		// An operation cut short is recovered before another begins.
		clientv3.Compare(clientv3.CreateRevision(s.keys.Intent(ref)), "=", 0),
	}
	if unmounted {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.keys.Use(ref)), "=", 0))
	}
	if usageRev >= 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.keys.Usage(ref)), "=", usageRev))
	}
	resp, err := s.txn(ctx, op+" volume "+ref.String(), append(cmps, guard...),
		append(lockPuts, clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Runtime(ref))),
		[]clientv3.Op{clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Use(ref)), clientv3.OpGet(s.keys.OpLock(ref)),
			clientv3.OpGet(s.keys.Usage(ref)), clientv3.OpGet(s.keys.Intent(ref))})
	if err != nil {
		return config.Volume{}, err
	}
	if !resp.Succeeded {
		use := rangeKvs(resp, 1)
		if !unmounted {
			use = nil
		}
		err := whyBusy(ref, rangeKvs(resp, 0), use, rangeKvs(resp, 2), rangeKvs(resp, 4))
		if usage := rangeKvs(resp, 3); errors.Is(err, errRaced) && usageRev >= 0 && modRevision(usage) != usageRev {
			return config.Volume{}, fmt.Errorf("volume %s was mounted or unmounted meanwhile, try again: %w", ref, config.ErrInUse)
		}
		if len(guard) > 0 && errors.Is(err, errRaced) {
			// Nothing about the volume explains the refusal: the guard did.
			return config.Volume{}, fmt.Errorf("%s %s: %w", op, ref, ErrNotLeader)
		}
		return config.Volume{}, err
	}
	// The responses after the lock's and the intent's puts.
	var rt []byte
	if kvs := rangeKvs(resp, 3); len(kvs) == 1 {
		rt = kvs[0].Value
	}
	return DecodeVolume(rangeKvs(resp, 2)[0].Value, rt)
}

// modRevision is the mod revision of a key read (0 if absent).
func modRevision(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

// whyBusy explains a failed conditional change from the volume's record,
// mount lock, operation lock and intent as read in the same transaction.
func whyBusy(ref config.VolumeRef, vol, use, oplock, intent []*mvccpb.KeyValue) error {
	if len(vol) == 0 {
		return fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
	}
	if len(use) == 1 {
		u, _ := config.DecodeUse(use[0].Value) // a corrupt lock still holds the volume
		return fmt.Errorf("volume %s is mounted on %s: %w", ref, u.Owner(), config.ErrInUse)
	}
	if len(oplock) == 1 {
		var l OpLock
		_ = json.Unmarshal(oplock[0].Value, &l)
		return fmt.Errorf("volume %s is busy (%s by %s since %s): %w", ref, l.Op, l.Owner, l.Since.Format(time.RFC3339), config.ErrInUse)
	}
	if len(intent) == 1 {
		var in Intent
		_ = json.Unmarshal(intent[0].Value, &in)
		return fmt.Errorf("volume %s is busy (a %s by %s since %s was cut short and is being recovered): %w",
			ref, in.Op, in.Owner, in.Since.Format(time.RFC3339), config.ErrInUse)
	}
	return fmt.Errorf("volume %s: %w", ref, errRaced)
}

// errRaced: a conditional change failed though the volume, its mount lock and
// its operation lock all looked fine when read back.
var errRaced = fmt.Errorf("changed during the request, try again: %w", config.ErrInUse)

func rangeKvs(resp *clientv3.TxnResponse, i int) []*mvccpb.KeyValue {
	return resp.Responses[i].GetResponseRange().Kvs
}

// FinishRemove deletes the record, runtime and lock of a volume whose image
// is gone, provided h still holds the lock, and returns the etcd revision.
func (s *Store) FinishRemove(ctx context.Context, ref config.VolumeRef, h Holder) (int64, error) {
	return s.deleteUnderLock(ctx, "remove volume "+ref.String(), ref, h)
}

// ForceRemove deletes every record of a volume — record, runtime, usage and
// snapshot records — in one transaction, or nothing; any image stays in the
// backend and nothing goes to the trash, so a volume created again under
// the name starts clean. A mount lock stays (it belongs to the host that
// holds it, on its lease, and goes with its unmount); an operation in
// progress refuses the removal.
func (s *Store) ForceRemove(ctx context.Context, ref config.VolumeRef) (int64, error) {
	resp, err := s.txn(ctx, "force-remove volume "+ref.String(),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), ">", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
		},
		append(s.deleteVolumeOps(ref), clientv3.OpDelete(s.keys.Intent(ref))),
		[]clientv3.Op{clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Use(ref)), clientv3.OpGet(s.keys.OpLock(ref))})
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		// A mount lock does not stop a forced removal; report the other causes.
		return 0, whyBusy(ref, rangeKvs(resp, 0), nil, rangeKvs(resp, 2), nil)
	}
	return resp.Header.Revision, nil
}

// PutRuntime replaces the runtime options of an existing volume.
func (s *Store) PutRuntime(ctx context.Context, ref config.VolumeRef, rt config.RuntimeOptions) (int64, error) {
	if err := rt.Validate(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(rt)
	if err != nil {
		return 0, err
	}
	resp, err := s.txn(ctx, "put runtime of "+ref.String(),
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), ">", 0)},
		[]clientv3.Op{clientv3.OpPut(s.keys.Runtime(ref), string(b))}, nil)
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
	}
	return resp.Header.Revision, nil
}
