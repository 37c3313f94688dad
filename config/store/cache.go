package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// Cache is an in-memory copy of every policy and volume, loaded in one read
// and kept current by an etcd watch. It serves lists of thousands of volumes
// without a per-item round trip. Writers call WaitRevision with the revision
// of their write before answering, so a client always reads its own writes
// from the same volmaster; other volmasters catch up within the watch delay.
type Cache struct {
	s *Store

	mu      sync.RWMutex
	synced  bool
	rev     int64
	changed chan struct{} // closed and replaced whenever rev moves
	cacheData
	// encoded holds volumes already rendered as JSON for GET; an entry is
	// dropped whenever its volume or runtime changes.
	encoded map[config.VolumeRef][]byte
	// sorted is every volume's name in order, built at the first list after
	// the set of volumes changed (nil until then): a list of 100,000
	// volumes then costs a copy, not a sort. Built under the read lock, so
	// two lists may build it at once; they build the same.
	sorted atomic.Pointer[[]config.VolumeRef]
}

// cacheData is what the cache holds, replaced whole on a reload.
type cacheData struct {
	volumes  map[config.VolumeRef]config.Volume
	runtimes map[config.VolumeRef]config.RuntimeOptions
	// runtimeRevs is the etcd revision of each volume's last change of its
	// runtime or volume record, for WaitRuntimes.
	runtimeRevs map[config.VolumeRef]int64
	policies    map[string]PolicyRecord
	// intents holds the volumes with an operation's intent (in flight, or
	// cut short and not recovered yet), so volmaster reads etcd for
	// operations to recover only while there are any.
	intents map[config.VolumeRef]bool
}

// NewCache returns an empty cache; Run fills it.
func (s *Store) NewCache() *Cache {
	return &Cache{s: s, changed: make(chan struct{})}
}

// healthEvery is how often Run confirms etcd answers, so a cache cut off from
// etcd stops serving stale data within about this long.
const healthEvery = 2 * time.Second

// Run loads and watches until ctx ends, starting over after any failure.
func (c *Cache) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := c.runOnce(ctx); err != nil {
			c.setSynced(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Cache) runOnce(ctx context.Context) error {
	k := c.s.keys
	resp, err := c.s.txn(ctx, "load cache", nil, []clientv3.Op{
		clientv3.OpGet(k.Volumes(), clientv3.WithPrefix()),
		clientv3.OpGet(k.Runtimes(), clientv3.WithPrefix()),
		clientv3.OpGet(k.Policies(), clientv3.WithPrefix()),
		clientv3.OpGet(k.Intents(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	}, nil)
	if err != nil {
		return err
	}
	d := cacheData{intents: map[config.VolumeRef]bool{}, volumes: map[config.VolumeRef]config.Volume{}, runtimes: map[config.VolumeRef]config.RuntimeOptions{},
		runtimeRevs: map[config.VolumeRef]int64{}, policies: map[string]PolicyRecord{}}
	for i := range 4 {
		for _, kv := range rangeKvs(resp, i) {
			c.apply(&d, mvccpb.PUT, kv)
		}
	}
	c.mu.Lock()
	c.cacheData = d
	c.sorted.Store(nil)
	c.encoded = map[config.VolumeRef][]byte{}
	c.mu.Unlock()
	c.advance(resp.Header.Revision, true)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Watch blocks until its stream is set up, for as long as etcd cannot
	// be reached: made aside, so that the health checks below go on and
	// mark the cache out of sync meanwhile.
	started := make(chan clientv3.WatchChan, 1)
	go func() {
		started <- c.s.cli.Watch(wctx, k.All(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	}()
	var wch clientv3.WatchChan // nil until started: its case waits
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case wch = <-started:
		case <-tick.C:
			hctx, cancel := context.WithTimeout(ctx, healthEvery)
			_, err := c.s.get(hctx, "cache health", k.Schema())
			cancel()
			if err != nil {
				c.setSynced(false)
				continue
			}
			c.setSynced(true)
		case wr, ok := <-wch:
			if !ok {
				return fmt.Errorf("watch closed")
			}
			if err := wr.Err(); err != nil {
				return err
			}
			c.mu.Lock()
			for _, ev := range wr.Events {
				if ref, ok := c.apply(&c.cacheData, ev.Type, ev.Kv); ok {
					delete(c.encoded, ref)
				}
			}
			c.mu.Unlock()
			c.advance(watchRevision(wr), true)
		}
	}
}

// apply records one key's new value (or deletion) in d and returns the
// volume it touched, if any.
func (c *Cache) apply(d *cacheData, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) (config.VolumeRef, bool) {
	vols, rts, pols := d.volumes, d.runtimes, d.policies
	k := c.s.keys
	key := string(kv.Key)
	del := typ == mvccpb.DELETE
	switch {
	case strings.HasPrefix(key, k.Volumes()):
		ref, ok := k.ParseRef(k.Volumes(), key)
		if !ok {
			return ref, false
		}
		if del {
			delete(vols, ref)
			delete(d.runtimeRevs, ref)
			c.sorted.Store(nil)
		} else if v, err := DecodeVolume(kv.Value, nil); err == nil {
			if _, had := vols[ref]; !had {
				c.sorted.Store(nil)
			}
			vols[ref] = v
			d.runtimeRevs[ref] = max(d.runtimeRevs[ref], kv.ModRevision)
		}
		return ref, true
	case strings.HasPrefix(key, k.Runtimes()):
		ref, ok := k.ParseRef(k.Runtimes(), key)
		if !ok {
			return ref, false
		}
		var rt config.RuntimeOptions
		if del {
			delete(rts, ref)
		} else if json.Unmarshal(kv.Value, &rt) == nil {
			rts[ref] = rt
		}
		if del {
			delete(d.runtimeRevs, ref)
		} else {
			d.runtimeRevs[ref] = max(d.runtimeRevs[ref], kv.ModRevision)
		}
		return ref, true
	case strings.HasPrefix(key, k.Intents()):
		if ref, ok := k.ParseRef(k.Intents(), key); ok {
			if del {
				delete(d.intents, ref)
			} else {
				d.intents[ref] = true
			}
		}
	case strings.HasPrefix(key, k.Policies()):
		name, ok := c.s.policyName(key)
		if !ok {
			break
		}
		if del {
			delete(pols, name)
		} else if r, err := DecodePolicyRecord(kv.Value); err == nil {
			pols[name] = r
		}
	}
	return config.VolumeRef{}, false
}

// watchRevision is the etcd revision the cache has seen once it applied wr.
// A watch catching up sends its backlog in pieces, each stamped with the
// newest revision of the store: only the last event says how far this piece
// goes. A response without events (progress) is as current as its header.
func watchRevision(wr clientv3.WatchResponse) int64 {
	if n := len(wr.Events); n > 0 {
		return wr.Events[n-1].Kv.ModRevision
	}
	return wr.Header.Revision
}

func (c *Cache) advance(rev int64, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.synced = synced
	if rev > c.rev {
		c.rev = rev
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

func (c *Cache) setSynced(ok bool) {
	c.mu.Lock()
	c.synced = ok
	c.mu.Unlock()
}

// Intents returns how many volumes have an operation's intent: operations
// in flight, or cut short and not recovered yet (0 while out of sync).
func (c *Cache) Intents() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.synced {
		return 0
	}
	return len(c.intents)
}

// WaitRevision blocks until the cache has seen etcd revision rev or ctx ends.
func (c *Cache) WaitRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		cur, ch := c.rev, c.changed
		c.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cache behind etcd revision %d: %w", rev, config.ErrUnavailable)
		}
	}
}

// WaitRuntimes returns the runtime options and size of those of refs whose
// runtime or volume record changed after etcd revision since (all of them for
// since 0), with
// the cache's revision to pass as since next time. Without such a change it
// waits for one until ctx ends, then returns no changes and no error: a
// long poll. Volumes that do not exist are left out.
func (c *Cache) WaitRuntimes(ctx context.Context, refs []config.VolumeRef, since int64) ([]config.RuntimeChange, int64, error) {
	for {
		c.mu.RLock()
		if err := c.read(); err != nil {
			c.mu.RUnlock()
			return nil, 0, err
		}
		var out []config.RuntimeChange
		for _, ref := range refs {
			rev, ok := c.runtimeRevs[ref]
			if v, vol := c.volumes[ref]; ok && vol && rev > since {
				out = append(out, config.RuntimeChange{VolumeRef: ref, Runtime: c.runtimes[ref], Size: v.Create.Size, Revision: rev})
			}
		}
		cur, ch := c.rev, c.changed
		c.mu.RUnlock()
		if len(out) > 0 {
			return out, cur, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, cur, nil
		}
	}
}

func (c *Cache) read() error {
	if !c.synced {
		return fmt.Errorf("volume cache is not in sync with etcd: %w", config.ErrUnavailable)
	}
	return nil
}

// Volume returns one volume with its runtime options.
func (c *Cache) Volume(ref config.VolumeRef) (config.Volume, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.read(); err != nil {
		return config.Volume{}, err
	}
	v, ok := c.volumes[ref]
	if !ok {
		return config.Volume{}, fmt.Errorf("volume %s: %w", ref, config.ErrNotFound)
	}
	v.Runtime = c.runtimes[ref]
	return v, nil
}

// VolumeJSON returns one volume with its runtime options as JSON, rendered
// once per change rather than once per request.
func (c *Cache) VolumeJSON(ref config.VolumeRef) ([]byte, error) {
	c.mu.RLock()
	if b, ok := c.encoded[ref]; ok && c.synced {
		c.mu.RUnlock()
		return b, nil
	}
	rev := c.rev
	c.mu.RUnlock()
	v, err := c.Volume(ref)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	// Store only if nothing changed meanwhile, or a stale rendering could stay.
	if c.rev == rev && c.encoded != nil {
		c.encoded[ref] = b
	}
	c.mu.Unlock()
	return b, nil
}

// Volumes returns the volumes of one policy, or of all policies if policy is
// empty, sorted by policy and name.
func (c *Cache) Volumes(policy string) ([]config.Volume, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.read(); err != nil {
		return nil, err
	}
	// Sorted as references, then copied once each: sorting the records
	// themselves moves every (large) struct log n times.
	refs := c.refs(policy)
	out := make([]config.Volume, len(refs))
	for i, ref := range refs {
		out[i] = c.volumes[ref]
		out[i].Runtime = c.runtimes[ref]
	}
	return out, nil
}

// VolumeRefs returns the names of the volumes of policy ("" for all),
// sorted by policy and name: what a list needs, without copying records.
func (c *Cache) VolumeRefs(policy string) ([]config.VolumeRef, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.read(); err != nil {
		return nil, err
	}
	return c.refs(policy), nil
}

// refs lists the volume names of policy, sorted; the caller holds c.mu.
func (c *Cache) refs(policy string) []config.VolumeRef {
	all := c.sorted.Load()
	if all == nil {
		s := make([]config.VolumeRef, 0, len(c.volumes))
		for ref := range c.volumes {
			s = append(s, ref)
		}
		slices.SortFunc(s, compareRefs)
		all = &s
		c.sorted.Store(all)
	}
	from, to := 0, len(*all)
	if policy != "" {
		// Sorted by policy first: its volumes are one run.
		from, _ = slices.BinarySearchFunc(*all, config.VolumeRef{Policy: policy}, compareRefs)
		to = from
		for to < len(*all) && (*all)[to].Policy == policy {
			to++
		}
	}
	return slices.Clone((*all)[from:to])
}

func compareRefs(a, b config.VolumeRef) int {
	if d := strings.Compare(a.Policy, b.Policy); d != 0 {
		return d
	}
	return strings.Compare(a.Name, b.Name)
}

// Policy returns the current version of one policy.
func (c *Cache) Policy(name string) (PolicyRecord, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.read(); err != nil {
		return PolicyRecord{}, err
	}
	p, ok := c.policies[name]
	if !ok {
		return PolicyRecord{}, fmt.Errorf("policy %s: %w", name, config.ErrNotFound)
	}
	return p, nil
}

// Policies returns every current policy, sorted by name.
func (c *Cache) Policies() ([]PolicyRecord, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.read(); err != nil {
		return nil, err
	}
	out := make([]PolicyRecord, 0, len(c.policies))
	for _, name := range slices.Sorted(maps.Keys(c.policies)) {
		out = append(out, c.policies[name])
	}
	return out, nil
}

// Counts returns how many volumes and policies the cache holds.
func (c *Cache) Counts() (volumes, policies int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.volumes), len(c.policies)
}
