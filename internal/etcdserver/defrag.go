package etcdserver

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of Defrag.
const (
	// DefaultDefragEvery is how often volmaster looks at its embedded etcd's
	// database file.
	DefaultDefragEvery = 5 * time.Minute
	// DefaultDefragMinFree and DefaultDefragMinFreeRatio: the file is
	// defragmented when its unused part (left by compaction) is both at
	// least 64 MiB and at least half of the file. Below that the space is
	// reused by new writes anyway, and defragmenting (which blocks the
	// member's reads and writes while it copies the file) is not worth it.
	DefaultDefragMinFree      = 64 << 20
	DefaultDefragMinFreeRatio = 0.5
	// defaultStatusTimeout and defaultDefragTimeout bound one Status and one
	// Defragment call.
	defaultStatusTimeout = 10 * time.Second
	defaultDefragTimeout = 2 * time.Minute
)

// Defrag defragments one etcd member's database file when compaction has
// left much of it unused. Compaction frees pages inside the file; only a
// defragmentation gives them back to the file system. Zero fields take the
// defaults above.
type Defrag struct {
	// Every is how often Run checks (DefaultDefragEvery).
	Every time.Duration
	// MinFree and MinFreeRatio are the unused bytes, and the unused share of
	// the file, that both must be reached (DefaultDefragMinFree,
	// DefaultDefragMinFreeRatio).
	MinFree      int64
	MinFreeRatio float64
	// StatusTimeout and DefragTimeout bound each Status and Defragment call
	// (10 s, 2 min).
	StatusTimeout, DefragTimeout time.Duration
	// Log receives one line per defragmentation and per failure (default:
	// logrus' standard logger).
	Log logrus.FieldLogger
}

// DefragResult is what one Check saw and did.
type DefragResult struct {
	// Size and InUse are the database file's size and the bytes in use
	// before; SizeAfter the file's size after (Size when not defragmented).
	Size, InUse, SizeAfter int64
	Defragmented           bool
}

func (d Defrag) withDefaults() Defrag {
	if d.Every <= 0 {
		d.Every = DefaultDefragEvery
	}
	if d.MinFree <= 0 {
		d.MinFree = DefaultDefragMinFree
	}
	if d.MinFreeRatio <= 0 {
		d.MinFreeRatio = DefaultDefragMinFreeRatio
	}
	if d.StatusTimeout <= 0 {
		d.StatusTimeout = defaultStatusTimeout
	}
	if d.DefragTimeout <= 0 {
		d.DefragTimeout = defaultDefragTimeout
	}
	if d.Log == nil {
		d.Log = logrus.StandardLogger()
	}
	return d
}

// Worthwhile reports whether a file of size bytes with inUse bytes in use
// should be defragmented.
func (d Defrag) Worthwhile(size, inUse int64) bool {
	d = d.withDefaults()
	free := size - inUse
	return size > 0 && free >= d.MinFree && float64(free) >= d.MinFreeRatio*float64(size)
}

// Check reads endpoint's status and defragments it if Worthwhile.
func (d Defrag) Check(ctx context.Context, cli *clientv3.Client, endpoint string) (DefragResult, error) {
	d = d.withDefaults()
	st, err := d.status(ctx, cli, endpoint)
	if err != nil {
		return DefragResult{}, err
	}
	r := DefragResult{Size: st.DbSize, InUse: st.DbSizeInUse, SizeAfter: st.DbSize}
	if !d.Worthwhile(st.DbSize, st.DbSizeInUse) {
		return r, nil
	}
	dctx, cancel := context.WithTimeout(ctx, d.DefragTimeout)
	_, err = cli.Defragment(dctx, endpoint)
	cancel()
	if err != nil {
		return r, fmt.Errorf("defragment etcd %s: %w", endpoint, err)
	}
	r.Defragmented = true
	if st, err = d.status(ctx, cli, endpoint); err != nil {
		return r, err
	}
	r.SizeAfter = st.DbSize
	return r, nil
}

func (d Defrag) status(ctx context.Context, cli *clientv3.Client, endpoint string) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, d.StatusTimeout)
	defer cancel()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("etcd status of %s: %w", endpoint, err)
	}
	return st, nil
}

// Run checks endpoint every d.Every until ctx ends. Use it for an etcd this
// process owns (volmaster's embedded one): a defragmentation stops the
// member for its duration, which is the operator's call on an external
// cluster.
func (d Defrag) Run(ctx context.Context, cli *clientv3.Client, endpoint string) {
	d = d.withDefaults()
	t := time.NewTicker(d.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := d.Check(ctx, cli, endpoint)
		if err != nil {
			if ctx.Err() == nil {
				d.Log.WithError(err).Warn("embedded etcd maintenance")
			}
			continue
		}
		if r.Defragmented {
			d.Log.WithFields(logrus.Fields{"before": r.Size, "in-use": r.InUse, "after": r.SizeAfter}).
				Info("embedded etcd defragmented (bytes)")
		}
	}
}
