//go:build cgo && pacific

package ceph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rados"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

var _ storage.CapacityReporter = (*Backend)(nil)

// Capacity is what v's pool can still store: the monitors' MAX AVAIL of
// the pool (ceph df: the OSDs' free space over its replication, to the
// first full OSD), less what a byte quota on the pool leaves. Both are
// monitor commands, bounded by rados_mon_op_timeout (Config.OpTimeout).
func (b *Backend) Capacity(ctx context.Context, v storage.Volume) (storage.Capacity, error) {
	p, err := pool(v)
	if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity: %w", err)
	}
	conn, err := b.conn(ctx, b.cfg.clientFor(v))
	if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of pool %s: %w", p, err)
	}
	fsid, err := conn.GetFSID()
	if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of pool %s: cluster fsid: %w", p, cephErr(err))
	}
	// From the OSD map, current at once: a pool that does not exist is
	// ErrNotFound. The statistics below come from the mgr's reports, which
	// know a new pool only some seconds later.
	if _, err := conn.GetPoolByName(p); err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of pool %s: %w", p, cephErr(err))
	}
	noStats := fmt.Errorf("capacity: no statistics of pool %s yet: %w", p, config.ErrUnavailable)
	var quota struct {
		MaxBytes int64 `json:"quota_max_bytes"`
		Used     int64 `json:"current_num_bytes"`
	}
	if err := monJSON(conn, map[string]any{"prefix": "osd pool get-quota", "pool": p, "format": "json"}, &quota); errors.Is(err, storage.ErrNotFound) {
		return storage.Capacity{}, fmt.Errorf("%w (%v)", noStats, err)
	} else if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of pool %s: %w", p, err)
	}
	var df struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats struct {
				MaxAvail int64 `json:"max_avail"`
			} `json:"stats"`
		} `json:"pools"`
	}
	if err := monJSON(conn, map[string]any{"prefix": "df", "format": "json"}, &df); err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of pool %s: %w", p, err)
	}
	avail := int64(-1)
	for _, dp := range df.Pools {
		if dp.Name == p {
			avail = dp.Stats.MaxAvail
		}
	}
	if avail < 0 {
		return storage.Capacity{}, noStats
	}
	if quota.MaxBytes > 0 {
		avail = min(avail, max(0, quota.MaxBytes-quota.Used))
	}
	return storage.Capacity{Store: "ceph:" + fsid + "/" + p, Available: avail}, nil
}

// monJSON runs the monitor command cmd and decodes its JSON answer into out.
func monJSON(conn *rados.Conn, cmd map[string]any, out any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	res, status, err := conn.MonCommand(b)
	if err != nil {
		return fmt.Errorf("%s: %w (%s)", cmd["prefix"], cephErr(err), status)
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("%s: answer %.200q: %w", cmd["prefix"], res, err)
	}
	return nil
}
