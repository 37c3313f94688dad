// Package lock keeps volplugin's host leases and mount locks in etcd.
//
// Each volplugin host holds ONE etcd lease; every mount lock it takes hangs on
// that lease, so a dead host's locks vanish together when its lease expires,
// and keep-alive traffic is one renewal per host per TTL/3 whatever the number
// of mounts. Like every lease-based lock this prefers liveness to safety: a
// host that cannot renew in time loses its locks while it may still be
// writing, which is why the Ceph backend also fences at the storage layer.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// maxTxnRetries bounds the read-modify-write loops on one lock.
const maxTxnRetries = 20

// Manager grants host leases and takes and releases mount locks.
type Manager struct {
	cli     *clientv3.Client
	keys    config.Keys
	timeout time.Duration
}

// New returns a Manager; each etcd call is bounded by timeout.
func New(cli *clientv3.Client, keys config.Keys, timeout time.Duration) *Manager {
	if timeout <= 0 {
		timeout = config.DefaultEtcdTimeout
	}
	return &Manager{cli: cli, keys: keys, timeout: timeout}
}

// Grant gives the daemon holder on host a new lease of ttl seconds and
// records it under the daemon's host key (on the lease itself, so the record
// goes when the lease does). holder may be empty (a daemon older than
// holders).
func (m *Manager) Grant(ctx context.Context, host, holder string, ttl int64) (config.HostLease, error) {
	if err := config.ValidateName("host", host); err != nil {
		return config.HostLease{}, err
	}
	if err := config.ValidateHolder(holder); err != nil {
		return config.HostLease{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	g, err := m.cli.Grant(ctx, ttl)
	if err != nil {
		return config.HostLease{}, config.EtcdError("grant lease to "+host, err)
	}
	hl := config.HostLease{Host: host, Holder: holder, ID: int64(g.ID), TTL: g.TTL, Since: time.Now().UTC()}
	b, err := json.Marshal(hl)
	if err != nil {
		return config.HostLease{}, err
	}
	if _, err := m.cli.Put(ctx, m.keys.Host(host, holder), string(b), clientv3.WithLease(g.ID)); err != nil {
		_, _ = m.cli.Revoke(ctx, g.ID)
		return config.HostLease{}, config.EtcdError("record lease of "+host, err)
	}
	return hl, nil
}

// KeepAlive renews a lease once and returns its new TTL; ErrNotFound if the
// lease has expired (its locks are gone).
func (m *Manager) KeepAlive(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("lease %d has expired: %w", id, config.ErrNotFound)
	}
	if err != nil {
		return 0, config.EtcdError(fmt.Sprintf("renew lease %d", id), err)
	}
	return resp.TTL, nil
}

// Revoke ends a lease at once, dropping every lock on it. Revoking an
// expired lease is not an error.
func (m *Manager) Revoke(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	_, err := m.cli.Revoke(ctx, clientv3.LeaseID(id))
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return config.EtcdError(fmt.Sprintf("revoke lease %d", id), err)
	}
	return nil
}

func validate(ref config.VolumeRef, req config.MountRequest) error {
	if err := ref.Validate(); err != nil {
		return err
	}
	if err := config.ValidateName("host", req.Hostname); err != nil {
		return err
	}
	if err := config.ValidateHolder(req.Holder); err != nil {
		return err
	}
	if req.MountID == "" || len(req.MountID) > 256 {
		return fmt.Errorf("mount ID must be 1..256 characters: %w", config.ErrInvalid)
	}
	return nil
}

// Acquire records one Docker mount of ref by a host under the host's lease.
// The lock is created if absent; the daemon that already holds it adds the
// mount ID (and moves the lock onto its current lease: a restart), even
// while an operation holds the volume. Another host's lock, or another
// daemon's on the same host, is ErrInUse naming the holder; a
// missing volume is ErrNotFound; a new lock on a volume busy with an
// operation is ErrBusy (retry later). Acquiring the same mount ID twice is a
// no-op.
func (m *Manager) Acquire(ctx context.Context, ref config.VolumeRef, req config.MountRequest) (config.Use, error) {
	if err := validate(ref, req); err != nil {
		return config.Use{}, err
	}
	if req.Lease == 0 {
		return config.Use{}, fmt.Errorf("mount of %s needs the host's lease: %w", ref, config.ErrInvalid)
	}
	key := m.keys.Use(ref)
	for range maxTxnRetries {
		cur, modRev, err := m.get(ctx, key)
		if err != nil {
			return config.Use{}, err
		}
		if cur != nil && !cur.HeldBy(req.Hostname, req.Holder) {
			return config.Use{}, fmt.Errorf("volume %s is mounted on %s (since %s): %w",
				ref, cur.Owner(), cur.Since.Format(time.RFC3339), config.ErrInUse)
		}
		u := config.Use{Volume: ref, Hostname: req.Hostname, Holder: req.Holder, Lease: req.Lease, Since: time.Now().UTC()}
		if cur != nil {
			u.Since, u.MountIDs = cur.Since, cur.MountIDs
		}
		if !slices.Contains(u.MountIDs, req.MountID) {
			u.MountIDs = append(slices.Clone(u.MountIDs), req.MountID)
		}
		b, err := json.Marshal(u)
		if err != nil {
			return config.Use{}, err
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(key), "=", modRev),
			clientv3.Compare(clientv3.CreateRevision(m.keys.Volume(ref)), ">", 0),
		}
		if cur == nil {
			// Only a new lock waits for an operation: a host that holds the
			// lock has the volume mounted already, so another container of
			// its own (or the move onto a new lease) changes nothing an
			// operation relies on, and must not fail behind a snapshot.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(m.keys.OpLock(ref)), "=", 0),
				// An operation cut short (its holder died) is recovered
				// first: a create or remove may be undone or finished.
				clientv3.Compare(clientv3.CreateRevision(m.keys.Intent(ref)), "=", 0))
		}
		usage, err := m.usage(ctx, ref, func(us *config.Usage) { us.Mounted(req.Hostname, u.Since) })
		if err != nil {
			return config.Use{}, err
		}
		tctx, cancel := context.WithTimeout(ctx, m.timeout)
		resp, err := m.cli.Txn(tctx).If(cmps...).
			Then(clientv3.OpPut(key, string(b), clientv3.WithLease(clientv3.LeaseID(req.Lease))), usage).
			Else(clientv3.OpGet(m.keys.Volume(ref)), clientv3.OpGet(m.keys.OpLock(ref)), clientv3.OpGet(m.keys.Intent(ref))).Commit()
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return config.Use{}, fmt.Errorf("lease %d of host %s has expired: %w", req.Lease, req.Hostname, config.ErrNotFound)
		}
		if err != nil {
			return config.Use{}, config.EtcdError("lock "+ref.String(), err)
		}
		if resp.Succeeded {
			return u, nil
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return config.Use{}, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
		}
		if cur == nil && len(resp.Responses[1].GetResponseRange().Kvs) == 1 {
			return config.Use{}, fmt.Errorf("volume %s is busy with another operation (remove, snapshot, resize): %w", ref, config.ErrBusy)
		}
		if cur == nil && len(resp.Responses[2].GetResponseRange().Kvs) == 1 {
			return config.Use{}, fmt.Errorf("volume %s is busy: an operation cut short is being recovered: %w", ref, config.ErrBusy)
		}
		// The lock changed between read and write; read it again.
	}
	return config.Use{}, fmt.Errorf("lock %s: too much contention: %w", ref, config.ErrBusy)
}

// Release drops one mount ID of the daemon's lock and deletes the lock when
// no ID is left. It returns the IDs still held. Releasing an ID that is not
// held (or a lock that is gone) is not an error; another host's lock, or
// another daemon's on the same host, is ErrInUse.
func (m *Manager) Release(ctx context.Context, ref config.VolumeRef, req config.MountRequest) ([]string, error) {
	if err := validate(ref, req); err != nil {
		return nil, err
	}
	key := m.keys.Use(ref)
	for range maxTxnRetries {
		cur, modRev, err := m.get(ctx, key)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			// The lock went with an expired lease; the unmount still
			// happened and is recorded, or the volume would count as in
			// use until proven unmounted.
			return []string{}, m.recordLateUnmount(ctx, ref, req.Hostname)
		}
		if !cur.HeldBy(req.Hostname, req.Holder) {
			return nil, fmt.Errorf("volume %s is locked by %s, not by this daemon of host %q: %w", ref, cur.Owner(), req.Hostname, config.ErrInUse)
		}
		rest := slices.DeleteFunc(slices.Clone(cur.MountIDs), func(id string) bool { return id == req.MountID })
		ops := make([]clientv3.Op, 0, 2)
		if len(rest) == 0 {
			usage, err := m.usage(ctx, ref, func(us *config.Usage) { us.Unmounted(req.Hostname, time.Now().UTC()) })
			if err != nil {
				return nil, err
			}
			ops = append(ops, clientv3.OpDelete(key), usage)
		} else {
			u := *cur
			u.MountIDs = rest
			b, err := json.Marshal(u)
			if err != nil {
				return nil, err
			}
			ops = append(ops, clientv3.OpPut(key, string(b), clientv3.WithIgnoreLease()))
		}
		tctx, cancel := context.WithTimeout(ctx, m.timeout)
		resp, err := m.cli.Txn(tctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, config.EtcdError("unlock "+ref.String(), err)
		}
		if resp.Succeeded {
			if rest == nil {
				rest = []string{}
			}
			return rest, nil
		}
	}
	return nil, fmt.Errorf("unlock %s: too much contention: %w", ref, config.ErrInUse)
}

// recordLateUnmount records the unmount of a host whose lock is already
// gone, if that host was the last to mount the volume and no unmount is
// recorded since.
func (m *Manager) recordLateUnmount(ctx context.Context, ref config.VolumeRef, host string) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.cli.Get(ctx, m.keys.Usage(ref))
	if err != nil {
		return config.EtcdError("read usage of "+ref.String(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	us, err := config.DecodeUsage(resp.Kvs[0].Value)
	if err != nil || us.Host != host || us.LastUnmounted.After(us.LastMounted) {
		return nil
	}
	us.Unmounted(host, time.Now().UTC())
	b, err := json.Marshal(us)
	if err != nil {
		return err
	}
	// Only if no lock came back and the record did not change meanwhile.
	_, err = m.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(m.keys.Usage(ref)), "=", resp.Kvs[0].ModRevision),
		clientv3.Compare(clientv3.CreateRevision(m.keys.Use(ref)), "=", 0),
	).Then(clientv3.OpPut(m.keys.Usage(ref), string(b))).Commit()
	if err != nil {
		return config.EtcdError("record unmount of "+ref.String(), err)
	}
	return nil
}

// usage returns the write of ref's usage record with change applied. The
// read is not part of the caller's transaction: racing writers of this
// record only ever move times forward, so the last one wins harmlessly.
func (m *Manager) usage(ctx context.Context, ref config.VolumeRef, change func(*config.Usage)) (clientv3.Op, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.cli.Get(ctx, m.keys.Usage(ref))
	if err != nil {
		return clientv3.Op{}, config.EtcdError("read usage of "+ref.String(), err)
	}
	var us config.Usage
	if len(resp.Kvs) == 1 {
		// A corrupt record is replaced: it only moves times forward.
		us, _ = config.DecodeUsage(resp.Kvs[0].Value)
	}
	change(&us)
	b, err := json.Marshal(us)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(m.keys.Usage(ref), string(b)), nil
}

// get reads a lock and its mod revision (0 and nil if absent).
func (m *Manager) get(ctx context.Context, key string) (*config.Use, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.cli.Get(ctx, key)
	if err != nil {
		return nil, 0, config.EtcdError("read lock", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	u, err := config.DecodeUse(resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", key, err)
	}
	return &u, resp.Kvs[0].ModRevision, nil
}
