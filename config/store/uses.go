package store

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

func decodeUse(b []byte) (config.Use, error) {
	var u config.Use
	if err := json.Unmarshal(b, &u); err != nil {
		return config.Use{}, fmt.Errorf("stored mount lock is corrupt: %w", err)
	}
	return u, nil
}

// ListUses returns every mount lock, sorted by volume.
func (s *Store) ListUses(ctx context.Context) ([]config.Use, error) {
	resp, err := s.get(ctx, "list uses", s.keys.Uses(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.Use, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, err := decodeUse(kv.Value)
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
	return decodeUse(resp.Kvs[0].Value)
}

// DeleteUse breaks the mount lock of one volume (volcli use force-remove).
func (s *Store) DeleteUse(ctx context.Context, ref config.VolumeRef) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ctx, s.keys.Use(ref))
	if err != nil {
		return 0, config.EtcdError("delete use of "+ref.String(), err)
	}
	if resp.Deleted == 0 {
		return 0, fmt.Errorf("no mount lock on volume %s: %w", ref, config.ErrNotFound)
	}
	return resp.Header.Revision, nil
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
		var u config.Usage
		if err := json.Unmarshal(kv.Value, &u); err != nil {
			return nil, fmt.Errorf("usage record %s is corrupt: %w", kv.Key, err)
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
