package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// importChunk bounds the puts of one import transaction, below etcd's
// default limit of 128 operations per transaction (--max-txn-ops).
const importChunk = 100

// ImportPolicy stores an imported policy's revisions, numbered 1.. in the
// order given, its head and (unless in.Deleted) its current version. A
// policy with no revisions here is written whole; one whose stored
// revisions are the imported ones (by content) is left alone
// (config.ImportUnchanged), and one whose stored revisions begin with them
// gets the rest; any other is refused (ErrExists), nothing written. Up to
// importChunk revisions go in one transaction, conditional on the keys it
// writes being absent and the head unmoved; a longer history takes several,
// the head and current version in the last, so an import cut short is
// finished by the next. dryRun reads only. It returns the action and the
// etcd revision of the last write (0 if none).
func (s *Store) ImportPolicy(ctx context.Context, name string, in config.PolicyImport, dryRun bool) (string, int64, error) {
	if err := config.ValidateName("policy", name); err != nil {
		return "", 0, err
	}
	if err := in.Normalize(name); err != nil {
		return "", 0, err
	}
	resp, err := s.txn(ctx, "read policy "+name, nil, []clientv3.Op{
		clientv3.OpGet(s.keys.PolicyHead(name)),
		clientv3.OpGet(s.keys.PolicyRevisions(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		clientv3.OpGet(s.keys.Policy(name)),
	}, nil)
	if err != nil {
		return "", 0, err
	}
	headRev := modRevision(rangeKvs(resp, 0))
	stored := rangeKvs(resp, 1)
	for i, kv := range stored {
		rec, err := DecodePolicyRecord(kv.Value)
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", kv.Key, err)
		}
		if i >= len(in.Revisions) {
			break
		}
		same, err := samePolicy(rec.Policy, in.Revisions[i].Policy)
		if err != nil {
			return "", 0, err
		}
		if rec.Revision != int64(i+1) || !same {
			return "", 0, fmt.Errorf("policy %s: revision %d stored here is not the imported one; not imported (delete or rename one of them): %w",
				name, rec.Revision, config.ErrExists)
		}
	}
	if len(stored) >= len(in.Revisions) {
		return config.ImportUnchanged, 0, nil
	}
	if len(stored) == 0 && len(rangeKvs(resp, 2)) > 0 {
		return "", 0, fmt.Errorf("policy %s: stored without revisions; not imported: %w", name, config.ErrExists)
	}
	if dryRun {
		return config.ImportCreated, 0, nil
	}
	var last int64
	for from := len(stored); from < len(in.Revisions); from += importChunk {
		to := min(from+importChunk, len(in.Revisions))
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		var rec PolicyRecord
		for i := from; i < to; i++ {
			rec = PolicyRecord{Revision: int64(i + 1), Time: in.Revisions[i].Time.UTC(), Policy: in.Revisions[i].Policy}
			b, err := json.Marshal(rec)
			if err != nil {
				return "", 0, err
			}
			key := s.keys.PolicyRevision(name, rec.Revision)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			ops = append(ops, clientv3.OpPut(key, string(b)))
			if to == len(in.Revisions) && i == to-1 {
				head, err := json.Marshal(PolicyHead{Revision: rec.Revision})
				if err != nil {
					return "", 0, err
				}
				ops = append(ops, clientv3.OpPut(s.keys.PolicyHead(name), string(head)))
				if !in.Deleted {
					ops = append(ops, clientv3.OpPut(s.keys.Policy(name), string(b)))
				}
			}
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.keys.PolicyHead(name)), "=", headRev))
		resp, err := s.txn(ctx, "import policy "+name, cmps, ops, nil)
		if err != nil {
			return "", 0, err
		}
		if !resp.Succeeded {
			return "", 0, fmt.Errorf("policy %s changed during the import, run it again: %w", name, config.ErrInUse)
		}
		last = resp.Header.Revision
	}
	return config.ImportCreated, last, nil
}

// samePolicy compares two policies by what they mean (their JSON).
func samePolicy(a, b config.Policy) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ja, jb), nil
}

// ImportGlobal stores g as the global configuration if none is stored
// (config.ImportCreated); an equal one is config.ImportUnchanged; a
// different one stays (config.ImportKept) and is returned. dryRun reads
// only.
func (s *Store) ImportGlobal(ctx context.Context, g config.Global, dryRun bool) (string, config.Global, int64, error) {
	if err := g.Normalize(); err != nil {
		return "", config.Global{}, 0, err
	}
	resp, err := s.get(ctx, "get global", s.keys.Global())
	if err != nil {
		return "", config.Global{}, 0, err
	}
	if len(resp.Kvs) == 1 {
		cur, err := decodeGlobal(resp.Kvs[0].Value)
		if err != nil {
			return "", config.Global{}, 0, err
		}
		if cur == g {
			return config.ImportUnchanged, cur, 0, nil
		}
		return config.ImportKept, cur, 0, nil
	}
	if dryRun {
		return config.ImportCreated, g, 0, nil
	}
	b, err := json.Marshal(g)
	if err != nil {
		return "", config.Global{}, 0, err
	}
	key := s.keys.Global()
	tr, err := s.txn(ctx, "import global", []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, string(b))}, nil)
	if err != nil {
		return "", config.Global{}, 0, err
	}
	if !tr.Succeeded {
		return "", config.Global{}, 0, fmt.Errorf("global config uploaded during the import, run it again: %w", config.ErrInUse)
	}
	return config.ImportCreated, g, tr.Header.Revision, nil
}

// ImportVolume stores an imported volume (record and runtime) with records
// for snaps, the snapshots its backend holds (each with Backend set to the
// backend's name for it). A volume not stored here is written with them in
// one transaction (create-if-absent, like CreateVolume, with no operation
// lock: its image exists already). A volume stored here with the same image
// is left alone, but gets records for the snapshots none of its records
// names yet. Any other volume of that name is refused (ErrExists). A
// snapshot's record name (ours, from its time) that is taken moves on by a
// millisecond until it is free. It returns the action, the snapshot records
// written (or to be written, with dryRun, which reads only) and the etcd
// revision of the last write (0 if none).
func (s *Store) ImportVolume(ctx context.Context, v config.Volume, snaps []config.Snapshot, dryRun bool) (string, []config.Snapshot, int64, error) {
	if err := v.CheckImported(); err != nil {
		return "", nil, 0, err
	}
	ref := v.Ref()
	reads := []clientv3.Op{
		clientv3.OpGet(s.keys.Volume(ref)),
		clientv3.OpGet(s.keys.Snapshots(ref), clientv3.WithPrefix()),
	}
	// The other volumes whose original image name this one's is: none of
	// them may hold the image already, and none may appear meanwhile.
	var owners []config.VolumeRef
	if v.Image != "" {
		owners = config.ImageOwners(v.Image, ref)
	}
	for _, o := range owners {
		reads = append(reads, clientv3.OpGet(s.keys.Volume(o)))
	}
	resp, err := s.txn(ctx, "read volume "+ref.String(), nil, reads, nil)
	if err != nil {
		return "", nil, 0, err
	}
	var ownerCmps []clientv3.Cmp
	for i, o := range owners {
		var modRev int64
		if kvs := rangeKvs(resp, 2+i); len(kvs) == 1 {
			other, err := DecodeVolume(kvs[0].Value, nil)
			if err != nil {
				return "", nil, 0, err
			}
			if other.Image == v.Image && other.Driver.Pool == v.Driver.Pool {
				return "", nil, 0, fmt.Errorf("image %s/%s is volume %s's already; two volumes on one image could be mounted on two hosts at once: %s not imported: %w",
					v.Driver.Pool, v.Image, o, ref, config.ErrExists)
			}
			modRev = kvs[0].ModRevision
		}
		ownerCmps = append(ownerCmps, clientv3.Compare(clientv3.ModRevision(s.keys.Volume(o)), "=", modRev))
	}
	action := config.ImportCreated
	var volRev int64
	if kvs := rangeKvs(resp, 0); len(kvs) == 1 {
		cur, err := DecodeVolume(kvs[0].Value, nil)
		if err != nil {
			return "", nil, 0, err
		}
		if cur.Image != v.Image || cur.Driver.Pool != v.Driver.Pool || cur.Backends != v.Backends {
			return "", nil, 0, fmt.Errorf("volume %s is stored here already, with another image; not imported: %w", ref, config.ErrExists)
		}
		action, volRev = config.ImportUnchanged, kvs[0].ModRevision
	}
	names, known := map[string]bool{}, map[string]bool{}
	for _, kv := range rangeKvs(resp, 1) {
		var sn config.Snapshot
		if err := json.Unmarshal(kv.Value, &sn); err != nil {
			return "", nil, 0, fmt.Errorf("snapshot record %s is corrupt: %w", kv.Key, err)
		}
		names[sn.Name], known[sn.BackendName()] = true, true
	}
	var adopt []config.Snapshot
	for _, sn := range snaps {
		if known[sn.BackendName()] {
			continue
		}
		for names[sn.Name] {
			sn.Time = sn.Time.Add(time.Millisecond)
			sn.Name = config.SnapshotName(sn.Time)
		}
		names[sn.Name], known[sn.BackendName()] = true, true
		adopt = append(adopt, sn)
	}
	slices.SortFunc(adopt, func(a, b config.Snapshot) int { return a.Time.Compare(b.Time) })
	if dryRun || (action == config.ImportUnchanged && len(adopt) == 0) {
		return action, adopt, 0, nil
	}
	var puts []clientv3.Op
	var cmps []clientv3.Cmp
	for _, sn := range adopt {
		b, err := json.Marshal(sn)
		if err != nil {
			return "", nil, 0, err
		}
		key := s.keys.Snapshot(ref, sn.Name)
		puts = append(puts, clientv3.OpPut(key, string(b)))
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
	}
	var last int64
	first := true
	for len(puts) > 0 || first {
		n := min(len(puts), importChunk)
		c, ops := slices.Clone(cmps[:n]), slices.Clone(puts[:n])
		cmps, puts = cmps[n:], puts[n:]
		if first && action == config.ImportCreated {
			rec, rt, err := s.encodeVolume(v)
			if err != nil {
				return "", nil, 0, err
			}
			c = append(c, ownerCmps...)
			c = append(c,
				clientv3.Compare(clientv3.CreateRevision(s.keys.Volume(ref)), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(s.keys.OpLock(ref)), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(s.keys.Intent(ref)), "=", 0))
			ops = append(ops, clientv3.OpPut(s.keys.Volume(ref), rec), clientv3.OpPut(s.keys.Runtime(ref), rt))
		} else {
			// Snapshot records only for the volume as read (or as written
			// by the first transaction).
			c = append(c, clientv3.Compare(clientv3.ModRevision(s.keys.Volume(ref)), "=", volRev))
		}
		first = false
		tr, err := s.txn(ctx, "import volume "+ref.String(), c, ops, nil)
		if err != nil {
			return "", nil, 0, err
		}
		if !tr.Succeeded {
			return "", nil, 0, fmt.Errorf("volume %s was created, changed or taken by an operation since it was read: run the import again: %w", ref, config.ErrInUse)
		}
		if volRev == 0 {
			volRev = tr.Header.Revision
		}
		last = tr.Header.Revision
	}
	return action, adopt, last, nil
}
