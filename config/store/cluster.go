package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// PutVolmaster publishes a volmaster's status on its lease.
func (s *Store) PutVolmaster(ctx context.Context, st config.VolmasterStatus, lease clientv3.LeaseID) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.cli.Put(ctx, s.keys.Volmaster(st.ID), string(b), clientv3.WithLease(lease)); err != nil {
		return config.EtcdError("publish volmaster status", err)
	}
	return nil
}

// Volmasters returns the status records of the running volmasters, sorted
// by ID.
func (s *Store) Volmasters(ctx context.Context) ([]config.VolmasterStatus, error) {
	resp, err := s.get(ctx, "list volmasters", s.keys.Volmasters(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]config.VolmasterStatus, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st config.VolmasterStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("volmaster status %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// SupervisorLeader returns the name the leading volsupervisor campaigned
// with: the value of the oldest key of the election, "" with no candidate.
func (s *Store) SupervisorLeader(ctx context.Context) (string, error) {
	resp, err := s.get(ctx, "read supervisor leader", s.keys.Leader()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// EtcdMembers lists the etcd cluster's members, each asked for its status
// (leader, version, size) within timeout; a member that does not answer in
// time is listed unhealthy with the reason. Members are asked through the
// endpoints this client was given first (a member may advertise an address
// only its peers reach), then through the client URL they advertise.
func (s *Store) EtcdMembers(ctx context.Context, timeout time.Duration) ([]config.EtcdMember, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	list, err := s.cli.MemberList(lctx)
	if err != nil {
		return nil, config.EtcdError("list etcd members", err)
	}
	byID := map[uint64]*clientv3.StatusResponse{}
	for _, a := range s.EndpointStatus(ctx, timeout, s.cli.Endpoints()) {
		if a.Err == nil {
			byID[a.Status.Header.MemberId] = a.Status
		}
	}
	var missing []string
	var missingIdx []int
	out := make([]config.EtcdMember, len(list.Members))
	for i, m := range list.Members {
		out[i] = config.EtcdMember{ID: strconv.FormatUint(m.ID, 16), Name: m.Name, ClientURLs: m.ClientURLs}
		if _, ok := byID[m.ID]; ok {
			continue
		}
		if len(m.ClientURLs) == 0 {
			out[i].Error = "not started yet (no client URL)"
			continue
		}
		missing, missingIdx = append(missing, m.ClientURLs[0]), append(missingIdx, i)
	}
	for j, a := range s.EndpointStatus(ctx, timeout, missing) {
		switch {
		case a.Err != nil:
			out[missingIdx[j]].Error = a.Err.Error()
		case a.Status.Header.MemberId != list.Members[missingIdx[j]].ID:
			out[missingIdx[j]].Error = fmt.Sprintf("%s answers as another member (%x)", missing[j], a.Status.Header.MemberId)
		default:
			byID[a.Status.Header.MemberId] = a.Status
		}
	}
	for i, m := range list.Members {
		if st, ok := byID[m.ID]; ok {
			out[i].Healthy, out[i].Version, out[i].DBSize = true, st.Version, st.DbSize
			out[i].Leader = st.Leader == m.ID
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// EndpointStatus is one etcd endpoint's answer to a status call.
type EndpointStatus struct {
	Endpoint string
	Status   *clientv3.StatusResponse
	Err      error
}

// EndpointStatus asks every endpoint for its status at once, each bounded
// by timeout, so a dead one costs the answer that long and no more.
func (s *Store) EndpointStatus(ctx context.Context, timeout time.Duration, endpoints []string) []EndpointStatus {
	out := make([]EndpointStatus, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := s.cli.Status(sctx, ep)
			out[i] = EndpointStatus{Endpoint: ep, Status: st, Err: err}
		})
	}
	wg.Wait()
	return out
}
