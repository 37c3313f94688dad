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

// The trash: a volume removed under its operation lock leaves its whole
// record (volume, runtime, usage, snapshot records) in one trash entry,
// written in the same transaction that deletes them; a restore writes them
// back and deletes the entry in one transaction, and a purge first marks
// the entry purging (so no restore can start on a half-purged image), then
// deletes it once the image is gone.

// FinishTrash moves the record of volume ref, whose image went to the
// trash (e.Handle), into trash entry e and drops the operation lock, in one
// transaction that requires h to hold the lock, the record to be the one
// read and guard. It fills e.Volume, e.Snapshots and e.Usage from etcd and
// returns the entry and the revision.
func (s *Store) FinishTrash(ctx context.Context, ref config.VolumeRef, e config.TrashEntry, h Holder, guard ...clientv3.Cmp) (config.TrashEntry, int64, error) {
	tref := config.TrashRef{Volume: ref, ID: e.ID}
	if err := tref.Validate(); err != nil {
		return config.TrashEntry{}, 0, err
	}
	lock := s.keys.OpLock(ref)
	for attempt := 0; ; attempt++ {
		cur, err := s.txn(ctx, "read volume "+ref.String(), nil, []clientv3.Op{
			clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.Runtime(ref)), clientv3.OpGet(s.keys.Usage(ref)),
			clientv3.OpGet(s.keys.Snapshots(ref), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		}, nil)
		if err != nil {
			return config.TrashEntry{}, 0, err
		}
		vol := rangeKvs(cur, 0)
		if len(vol) == 0 {
			return config.TrashEntry{}, 0, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
		}
		var rt []byte
		if kvs := rangeKvs(cur, 1); len(kvs) == 1 {
			rt = kvs[0].Value
		}
		if e.Volume, err = DecodeVolume(vol[0].Value, rt); err != nil {
			return config.TrashEntry{}, 0, err
		}
		e.Usage = nil
		if kvs := rangeKvs(cur, 2); len(kvs) == 1 {
			u, err := config.DecodeUsage(kvs[0].Value)
			if err != nil {
				return config.TrashEntry{}, 0, fmt.Errorf("%s: %w", ref, err)
			}
			e.Usage = &u
		}
		e.Snapshots = nil
		for _, kv := range rangeKvs(cur, 3) {
			var sn config.Snapshot
			if err := json.Unmarshal(kv.Value, &sn); err != nil {
				return config.TrashEntry{}, 0, fmt.Errorf("snapshot record %s is corrupt: %w", kv.Key, err)
			}
			e.Snapshots = append(e.Snapshots, sn)
		}
		b, err := json.Marshal(e)
		if err != nil {
			return config.TrashEntry{}, 0, err
		}
		cmps := append([]clientv3.Cmp{
			clientv3.Compare(clientv3.LeaseValue(lock), "=", h.Lease),
			clientv3.Compare(clientv3.ModRevision(s.keys.Volume(ref)), "=", vol[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(s.keys.Usage(ref)), "=", modRevision(rangeKvs(cur, 2))),
			clientv3.Compare(clientv3.CreateRevision(s.keys.Trash(tref)), "=", 0),
		}, guard...)
		resp, err := s.txn(ctx, "move volume "+ref.String()+" to the trash", cmps,
			append(append(s.deleteVolumeOps(ref), s.unlockOps(ref)...), clientv3.OpPut(s.keys.Trash(tref), string(b))),
			[]clientv3.Op{clientv3.OpGet(lock), clientv3.OpGet(s.keys.Trash(tref))})
		if err != nil {
			return config.TrashEntry{}, 0, err
		}
		if resp.Succeeded {
			return e, resp.Header.Revision, nil
		}
		if l := rangeKvs(resp, 0); len(l) == 0 || clientv3.LeaseID(l[0].Lease) != h.Lease {
			return config.TrashEntry{}, 0, fmt.Errorf("move volume %s to the trash: operation lock lost (lease expired?): %w", ref, config.ErrInUse)
		}
		if len(rangeKvs(resp, 1)) == 1 {
			return config.TrashEntry{}, 0, fmt.Errorf("trash entry %s exists already, try again: %w", tref, config.ErrBusy)
		}
		if len(guard) > 0 {
			return config.TrashEntry{}, 0, fmt.Errorf("move volume %s to the trash: %w", ref, ErrNotLeader)
		}
		// The record or usage changed (marked formatted): read it again.
		if attempt >= maxRecordRetries {
			return config.TrashEntry{}, 0, fmt.Errorf("move volume %s to the trash: %w", ref, errRaced)
		}
	}
}

// deleteVolumeOps delete every record of a volume but its mount and
// operation locks: record, runtime, usage and snapshot records.
func (s *Store) deleteVolumeOps(ref config.VolumeRef) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpDelete(s.keys.Volume(ref)), clientv3.OpDelete(s.keys.Runtime(ref)), clientv3.OpDelete(s.keys.Usage(ref)),
		clientv3.OpDelete(s.keys.Snapshots(ref), clientv3.WithPrefix()),
	}
}

// ListTrash returns the trash entries of every volume (ref zero) or of
// one volume name, oldest first within each name.
func (s *Store) ListTrash(ctx context.Context, ref config.VolumeRef) ([]config.TrashEntry, error) {
	prefix := s.keys.AllTrash()
	if ref != (config.VolumeRef{}) {
		prefix = s.keys.TrashOf(ref)
	}
	resp, err := s.get(ctx, "list trash", prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.TrashEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e config.TrashEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("trash entry %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// GetTrash returns one trash entry and its mod revision.
func (s *Store) GetTrash(ctx context.Context, tref config.TrashRef) (config.TrashEntry, int64, error) {
	if err := tref.Validate(); err != nil {
		return config.TrashEntry{}, 0, err
	}
	resp, err := s.get(ctx, "get trash entry "+tref.String(), s.keys.Trash(tref))
	if err != nil {
		return config.TrashEntry{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return config.TrashEntry{}, 0, fmt.Errorf("trash entry %s: %w", tref, config.ErrNotFound)
	}
	var e config.TrashEntry
	if err := json.Unmarshal(resp.Kvs[0].Value, &e); err != nil {
		return config.TrashEntry{}, 0, fmt.Errorf("trash entry %s is corrupt: %w", tref, err)
	}
	return e, resp.Kvs[0].ModRevision, nil
}

// BeginRestore takes trash entry tref out of the trash: in one transaction
// it writes the volume's record (restored-at now), runtime, usage and
// snapshot records back, takes its operation lock for h and deletes the
// entry, provided no volume of that name exists (ErrExists), the entry is
// unchanged and not being purged. The caller restores the image next and
// then calls ReleaseOp, or RollbackRestore if that fails.
func (s *Store) BeginRestore(ctx context.Context, tref config.TrashRef, h Holder, now time.Time) (config.TrashEntry, error) {
	e, modRev, err := s.GetTrash(ctx, tref)
	if err != nil {
		return config.TrashEntry{}, err
	}
	if e.Purging {
		return config.TrashEntry{}, fmt.Errorf("trash entry %s is being purged (finish it with volcli volume trash purge %s %s): %w",
			tref, tref.Volume, tref.ID, config.ErrBusy)
	}
	ref := tref.Volume
	if e.Ref() != ref {
		return config.TrashEntry{}, fmt.Errorf("trash entry %s holds volume %s: %w", tref, e.Ref(), config.ErrInvalid)
	}
	v := e.Volume
	v.RestoredAt = now.UTC()
	rec, rt, err := s.encodeVolume(v)
	if err != nil {
		return config.TrashEntry{}, err
	}
	lockPuts, err := s.lockOps(ref, Intent{Op: "restore", Handle: e.Handle}, h)
	if err != nil {
		return config.TrashEntry{}, err
	}
	ops := append([]clientv3.Op{clientv3.OpPut(s.keys.Volume(ref), rec), clientv3.OpPut(s.keys.Runtime(ref), rt),
		clientv3.OpDelete(s.keys.Trash(tref))}, lockPuts...)
	if e.Usage != nil {
		b, err := json.Marshal(e.Usage)
		if err != nil {
			return config.TrashEntry{}, err
		}
		ops = append(ops, clientv3.OpPut(s.keys.Usage(ref), string(b)))
	}
	for _, sn := range e.Snapshots {
		b, err := json.Marshal(sn)
		if err != nil {
			return config.TrashEntry{}, err
		}
		ops = append(ops, clientv3.OpPut(s.keys.Snapshot(ref, sn.Name), string(b)))
	}
	resp, err := s.txn(ctx, "restore "+tref.String(),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.keys.Intent(ref)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(s.keys.Trash(tref)), "=", modRev),
		}, ops,
		[]clientv3.Op{clientv3.OpGet(s.keys.Volume(ref)), clientv3.OpGet(s.keys.OpLock(ref)), clientv3.OpGet(s.keys.Trash(tref))})
	if err != nil {
		return config.TrashEntry{}, err
	}
	if !resp.Succeeded {
		switch {
		case len(rangeKvs(resp, 0)) == 1:
			return config.TrashEntry{}, fmt.Errorf("cannot restore %s: a volume named %s exists; remove it first "+
				"(volcli volume remove %s), then restore again: %w", tref, ref, ref, config.ErrExists)
		case len(rangeKvs(resp, 2)) == 0:
			return config.TrashEntry{}, fmt.Errorf("trash entry %s (restored or purged meanwhile): %w", tref, config.ErrNotFound)
		case len(rangeKvs(resp, 1)) == 1:
			return config.TrashEntry{}, whyBusy(ref, []*mvccpb.KeyValue{{}}, nil, rangeKvs(resp, 1), nil)
		}
		return config.TrashEntry{}, fmt.Errorf("restore %s: %w", tref, errRaced)
	}
	e.Volume = v
	return e, nil
}

// RollbackRestore undoes BeginRestore after the image could not be
// restored: one transaction, provided h still holds the operation lock,
// deletes the volume's records and lock and puts the trash entry back.
func (s *Store) RollbackRestore(ctx context.Context, e config.TrashEntry, h Holder) (int64, error) {
	ref := e.Ref()
	tref := config.TrashRef{Volume: ref, ID: e.ID}
	e.Volume.RestoredAt = time.Time{}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	lock := s.keys.OpLock(ref)
	resp, err := s.txn(ctx, "roll back restore of "+tref.String(),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.LeaseValue(lock), "=", h.Lease),
			clientv3.Compare(clientv3.CreateRevision(s.keys.Trash(tref)), "=", 0),
		},
		append(append(s.deleteVolumeOps(ref), s.unlockOps(ref)...), clientv3.OpPut(s.keys.Trash(tref), string(b))), nil)
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("roll back restore of %s: operation lock lost (lease expired?): %w", tref, config.ErrInUse)
	}
	return resp.Header.Revision, nil
}

// BeginPurge marks trash entry tref purging (once marked, it can only be
// purged) and returns it, provided guard holds (ErrNotLeader otherwise).
// Marking an entry already marked changes nothing: a purge that failed
// half-way is finished by purging again.
func (s *Store) BeginPurge(ctx context.Context, tref config.TrashRef, guard ...clientv3.Cmp) (config.TrashEntry, error) {
	for attempt := 0; ; attempt++ {
		e, modRev, err := s.GetTrash(ctx, tref)
		if err != nil {
			return config.TrashEntry{}, err
		}
		key := s.keys.Trash(tref)
		var then []clientv3.Op
		if !e.Purging {
			// Marked once; a purge tried again only checks the guard (a
			// transaction without writes adds no revision).
			e.Purging = true
			b, err := json.Marshal(e)
			if err != nil {
				return config.TrashEntry{}, err
			}
			then = []clientv3.Op{clientv3.OpPut(key, string(b))}
		}
		resp, err := s.txn(ctx, "purge "+tref.String(),
			append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}, guard...),
			then, []clientv3.Op{clientv3.OpGet(key)})
		if err != nil {
			return config.TrashEntry{}, err
		}
		if resp.Succeeded {
			return e, nil
		}
		if kvs := rangeKvs(resp, 0); len(kvs) == 0 {
			return config.TrashEntry{}, fmt.Errorf("trash entry %s (restored or purged meanwhile): %w", tref, config.ErrNotFound)
		} else if kvs[0].ModRevision == modRev && len(guard) > 0 {
			return config.TrashEntry{}, fmt.Errorf("purge %s: %w", tref, ErrNotLeader)
		}
		if attempt >= maxRecordRetries {
			return config.TrashEntry{}, fmt.Errorf("purge %s: %w", tref, errRaced)
		}
	}
}

// FinishPurge deletes trash entry tref, whose image is gone, if it is
// marked purging and guard holds; an entry already gone is not an error.
func (s *Store) FinishPurge(ctx context.Context, tref config.TrashRef, guard ...clientv3.Cmp) (int64, error) {
	e, modRev, err := s.GetTrash(ctx, tref)
	if errors.Is(err, config.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !e.Purging {
		return 0, fmt.Errorf("trash entry %s is not being purged: %w", tref, config.ErrInvalid)
	}
	key := s.keys.Trash(tref)
	resp, err := s.txn(ctx, "finish purge of "+tref.String(),
		append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}, guard...),
		[]clientv3.Op{clientv3.OpDelete(key)}, []clientv3.Op{clientv3.OpGet(key)})
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		if len(rangeKvs(resp, 0)) == 0 {
			return resp.Header.Revision, nil
		}
		if len(guard) > 0 {
			return 0, fmt.Errorf("finish purge of %s: %w", tref, ErrNotLeader)
		}
		return 0, fmt.Errorf("finish purge of %s: %w", tref, errRaced)
	}
	return resp.Header.Revision, nil
}
