package lock

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// LeaseHost returns the host a live lease was granted to, found from the
// host record Grant attached to it. A lease that is alive but carries no host
// record (its daemon's record has moved to a newer lease, or the lease is
// not a host lease at all) gives "" and no error; a lease that does not exist
// (expired, revoked, never granted) gives ErrNotFound. hint, if not empty,
// is the host expected: when one of its daemons' records is on the lease
// that is the answer from one round trip, without listing the lease's keys
// (one per mount lock).
func (m *Manager) LeaseHost(ctx context.Context, id int64, hint string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if hint != "" {
		// The host's own record (daemons older than holders) and its
		// daemons' records, in one round trip.
		own := m.keys.Host(hint, "")
		resp, err := m.cli.Txn(ctx).Then(clientv3.OpGet(own), clientv3.OpGet(own+"/", clientv3.WithPrefix())).Commit()
		if err != nil {
			return "", config.EtcdError("read host records of "+hint, err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				// A key on a lease exists only while the lease lives.
				if kv.Lease == id {
					return hint, nil
				}
			}
		}
	}
	resp, err := m.cli.TimeToLive(ctx, clientv3.LeaseID(id), clientv3.WithAttachedKeys())
	if err != nil {
		return "", config.EtcdError(fmt.Sprintf("look up lease %d", id), err)
	}
	if resp.TTL < 0 {
		return "", fmt.Errorf("lease %d does not exist or has expired: %w", id, config.ErrNotFound)
	}
	for _, k := range resp.Keys {
		if host, ok := m.keys.HostOfKey(string(k)); ok {
			return host, nil
		}
	}
	return "", nil
}
