package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// ListUses returns every mount lock, sorted by volume.
func (s *Store) ListUses(ctx context.Context) ([]config.Use, error) {
	resp, err := s.get(ctx, "list uses", s.keys.Uses(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.Use, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, err := config.DecodeUse(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// GetUse returns the mount lock of one volume.
func (s *Store) GetUse(ctx context.Context, ref config.VolumeRef) (config.Use, error) {
	resp, err := s.get(ctx, "get use of "+ref.String(), s.keys.Use(ref))
	if err != nil {
		return config.Use{}, err
	}
	if len(resp.Kvs) == 0 {
		return config.Use{}, fmt.Errorf("no mount lock on volume %s: %w", ref, config.ErrNotFound)
	}
	return config.DecodeUse(resp.Kvs[0].Value)
}

// ForcedUnmount is what ForceUnmount did.
type ForcedUnmount struct {
	// Lock is the mount lock it broke, nil if there was none.
	Lock *config.Use
	// Usage is the usage record with the unmount recorded (zero if the
	// volume no longer exists).
	Usage    config.Usage
	Revision int64
}

// ForceUnmount is volcli use force-remove: an operator who made sure the
// volume is mounted nowhere any more breaks its mount lock, if any, and
// records the unmount of its last mount at now, in one transaction. From then
// on the volume counts as unmounted: a remove may go ahead, and volsupervisor
// removes it (ephemeral, reclaim) once the grace has passed. ErrNotFound if
// there is neither a lock nor a mount without a recorded unmount.
func (s *Store) ForceUnmount(ctx context.Context, ref config.VolumeRef, now time.Time) (ForcedUnmount, error) {
	useKey, usageKey, volKey := s.keys.Use(ref), s.keys.Usage(ref), s.keys.Volume(ref)
	for range maxTxnRetries {
		resp, err := s.txn(ctx, "read use of "+ref.String(), nil,
			[]clientv3.Op{clientv3.OpGet(useKey), clientv3.OpGet(usageKey), clientv3.OpGet(volKey, clientv3.WithCountOnly())}, nil)
		if err != nil {
			return ForcedUnmount{}, err
		}
		var out ForcedUnmount
		useKvs, usageKvs := rangeKvs(resp, 0), rangeKvs(resp, 1)
		if len(useKvs) == 1 {
			u, err := config.DecodeUse(useKvs[0].Value)
			if err != nil {
				return ForcedUnmount{}, err
			}
			out.Lock = &u
		}
		var us *config.Usage
		if len(usageKvs) == 1 {
			u, err := config.DecodeUsage(usageKvs[0].Value)
			if err != nil {
				return ForcedUnmount{}, fmt.Errorf("%s: %w", ref, err)
			}
			us = &u
		}
		if out.Lock == nil && (us == nil || !us.Unrecorded()) {
			return ForcedUnmount{}, fmt.Errorf("no mount lock on volume %s and no mount without a recorded unmount: %w", ref, config.ErrNotFound)
		}
		volExists := resp.Responses[2].GetResponseRange().Count > 0
		if !volExists && out.Lock == nil {
			return ForcedUnmount{}, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(useKey), "=", modRevision(useKvs)),
			clientv3.Compare(clientv3.ModRevision(usageKey), "=", modRevision(usageKvs)),
		}
		var ops []clientv3.Op
		if out.Lock != nil {
			ops = append(ops, clientv3.OpDelete(useKey))
		}
		if volExists {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(volKey), ">", 0))
			var nu config.Usage
			if us != nil {
				nu = *us
			} else {
				// A lock without a usage record (written before there were
				// any): its mount is the last one.
				nu = config.Usage{LastMounted: out.Lock.Since, Host: out.Lock.Hostname}
			}
			nu.Unmounted("", now.UTC())
			b, err := json.Marshal(nu)
			if err != nil {
				return ForcedUnmount{}, err
			}
			ops = append(ops, clientv3.OpPut(usageKey, string(b)))
			out.Usage = nu
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(volKey), "=", 0))
		}
		tresp, err := s.txn(ctx, "force-remove use of "+ref.String(), cmps, ops, nil)
		if err != nil {
			return ForcedUnmount{}, err
		}
		if tresp.Succeeded {
			out.Revision = tresp.Header.Revision
			return out, nil
		}
		// A mount, unmount or remove came in between: read again.
	}
	return ForcedUnmount{}, fmt.Errorf("force-remove use of %s: too much contention: %w", ref, config.ErrBusy)
}

// GetUsage returns a volume's usage record (nil if it has none) and the
// record's mod revision (0 if none), for BeginRemove.
func (s *Store) GetUsage(ctx context.Context, ref config.VolumeRef) (*config.Usage, int64, error) {
	resp, err := s.get(ctx, "get usage of "+ref.String(), s.keys.Usage(ref))
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	u, err := config.DecodeUsage(resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", ref, err)
	}
	return &u, resp.Kvs[0].ModRevision, nil
}

// Usages returns every volume's usage record.
func (s *Store) Usages(ctx context.Context) (map[config.VolumeRef]config.Usage, error) {
	resp, err := s.get(ctx, "list usage", s.keys.Usages(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[config.VolumeRef]config.Usage, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ref, ok := s.keys.ParseRef(s.keys.Usages(), string(kv.Key))
		if !ok {
			continue
		}
		u, err := config.DecodeUsage(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out[ref] = u
	}
	return out, nil
}

// SupervisorStatuses returns the status records of the running
// volsupervisors, sorted by name.
func (s *Store) SupervisorStatuses(ctx context.Context) ([]config.SupervisorStatus, error) {
	resp, err := s.get(ctx, "list supervisors", s.keys.SupervisorStatuses(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.SupervisorStatus, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st config.SupervisorStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("supervisor status %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, st)
	}
	return out, nil
}
