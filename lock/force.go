package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// Forced is what ForceRelease did.
type Forced struct {
	// Lock is the mount lock it broke, nil if there was none.
	Lock *config.Use
	// Usage is the usage record with the unmount recorded (zero if the
	// volume no longer exists).
	Usage    config.Usage
	Revision int64
}

// ForceRelease is volcli use force-remove: an operator who made sure the
// volume is mounted nowhere any more breaks its mount lock, if any, and
// records the unmount of its last mount at now, in one transaction. From then
// on the volume counts as unmounted: a remove may go ahead, and volsupervisor
// removes it (ephemeral, reclaim) once the grace has passed. ErrNotFound if
// there is neither a lock nor a mount without a recorded unmount.
func (m *Manager) ForceRelease(ctx context.Context, ref config.VolumeRef, now time.Time) (Forced, error) {
	useKey, usageKey, volKey := m.keys.Use(ref), m.keys.Usage(ref), m.keys.Volume(ref)
	for range maxTxnRetries {
		tctx, cancel := context.WithTimeout(ctx, m.timeout)
		resp, err := m.cli.Txn(tctx).Then(clientv3.OpGet(useKey), clientv3.OpGet(usageKey), clientv3.OpGet(volKey, clientv3.WithCountOnly())).Commit()
		cancel()
		if err != nil {
			return Forced{}, config.EtcdError("read use of "+ref.String(), err)
		}
		var out Forced
		useKvs, usageKvs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(useKvs) == 1 {
			u, err := config.DecodeUse(useKvs[0].Value)
			if err != nil {
				return Forced{}, err
			}
			out.Lock = &u
		}
		var us *config.Usage
		if len(usageKvs) == 1 {
			u, err := config.DecodeUsage(usageKvs[0].Value)
			if err != nil {
				return Forced{}, fmt.Errorf("%s: %w", ref, err)
			}
			us = &u
		}
		if out.Lock == nil && (us == nil || !us.Unrecorded()) {
			return Forced{}, fmt.Errorf("no mount lock on volume %s and no mount without a recorded unmount: %w", ref, config.ErrNotFound)
		}
		volExists := resp.Responses[2].GetResponseRange().Count > 0
		if !volExists && out.Lock == nil {
			return Forced{}, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
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
				return Forced{}, err
			}
			ops = append(ops, clientv3.OpPut(usageKey, string(b)))
			out.Usage = nu
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(volKey), "=", 0))
		}
		tctx, cancel = context.WithTimeout(ctx, m.timeout)
		tresp, err := m.cli.Txn(tctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return Forced{}, config.EtcdError("force-remove use of "+ref.String(), err)
		}
		if tresp.Succeeded {
			out.Revision = tresp.Header.Revision
			return out, nil
		}
		// A mount, unmount or remove came in between: read again.
	}
	return Forced{}, fmt.Errorf("force-remove use of %s: too much contention: %w", ref, config.ErrBusy)
}

// modRevision is the mod revision of a key read as kvs (0: absent).
func modRevision(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}
