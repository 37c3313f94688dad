package store

import (
	"context"
	"encoding/json"
	"fmt"

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
