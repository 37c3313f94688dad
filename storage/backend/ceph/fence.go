//go:build cgo && pacific

package ceph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
	"github.com/volplugin/volplugin/storage/internal/fsutil"
)

// Image metadata keys: informational records for operators and for the
// messages of ErrInUse; nothing decides on them.
const (
	metaHost   = "volplugin.host"        // the host that last mapped the image
	metaBroken = "volplugin.lock-broken" // when, by whom and why BreakLock fenced
)

// holder is a client that has an image open (a header watch) or holds its
// exclusive lock.
type holder struct {
	client string // client.<global id>
	addr   string // its address, what blocklisting takes; "" if unknown
	locked bool
}

// holders lists the clients other than conn itself that have img open or
// hold its lock. A mapping client (kernel, rbd-nbd, rbd-fuse) always has
// the image open, so this is "mapped or locked anywhere".
func holders(conn *rados.Conn, img *rbd.Image) ([]holder, error) {
	own, err := conn.GetAddrs()
	if err != nil {
		return nil, fmt.Errorf("own address: %w", err)
	}
	ws, err := img.ListWatchers()
	if err != nil {
		return nil, fmt.Errorf("list watchers: %w", cephErr(err))
	}
	var hs []holder
	for _, w := range ws {
		if !sameClient(own, w.Addr) {
			hs = append(hs, holder{client: fmt.Sprintf("client.%d", w.Id), addr: w.Addr})
		}
	}
	features, err := img.GetFeatures()
	if err != nil {
		return nil, fmt.Errorf("features: %w", cephErr(err))
	}
	if features&rbd.FeatureExclusiveLock == 0 {
		return hs, nil // no managed lock (librbd says EINVAL)
	}
	owners, err := img.LockGetOwners()
	if err != nil && !errors.Is(cephErr(err), storage.ErrNotFound) {
		return nil, fmt.Errorf("lock owners: %w", cephErr(err))
	}
next:
	for _, o := range owners {
		for i := range hs {
			if hs[i].client == o.Owner {
				hs[i].locked = true
				continue next
			}
		}
		hs = append(hs, holder{client: o.Owner, locked: true})
	}
	return hs, nil
}

// sameClient reports whether addr (ip:port/nonce, as a watcher shows it) is
// one of own's addresses (rados_getaddrs: "[v2:ip:port/nonce,v1:...]" or a
// bare address). The nonce identifies one client instance.
func sameClient(own, addr string) bool {
	_, nonce, ok := strings.Cut(addr, "/")
	if !ok || nonce == "" {
		return false
	}
	for _, a := range strings.Split(strings.Trim(own, "[]"), ",") {
		if _, n, ok := strings.Cut(a, "/"); ok && n == nonce {
			return true
		}
	}
	return false
}

func describe(hs []holder) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.client
		if h.addr != "" {
			parts[i] += " at " + h.addr
		}
		if h.locked {
			parts[i] += " (lock owner)"
		}
	}
	return strings.Join(parts, ", ")
}

// heldErr is the ErrInUse for an image with holders, naming the host that
// last mapped it.
func heldErr(img *rbd.Image, vl vol, hs []holder) error {
	msg := fmt.Sprintf("image %s is held by %s", vl.spec(), describe(hs))
	if h, err := img.GetMetadata(metaHost); err == nil && h != "" {
		msg += ", last mapped by host " + h
	}
	return fmt.Errorf("%s: %w", msg, storage.ErrInUse)
}

// BreakLock fences whoever holds v's image so that this host can map it:
// every client with the image open or holding its lock is blocklisted for
// Config.BlocklistExpiry (its late writes then fail), the exclusive lock is
// broken, and BreakLock returns once the cluster has dropped their watches.
//
// The backend cannot know whether the holder is dead. Only a caller that
// knows it (volplugin holding the volume's etcd mount lock after the previous
// owner's lease expired, or an operator's force-remove) may call it; reason
// is recorded in the image's metadata. Breaking a live owner's lock fences a
// live host: Mount and Destroy never do it by themselves. An image mapped on
// this host is refused (storage.ErrInUse): unmount it instead. Breaking an
// image nobody holds does nothing.
func (b *Backend) BreakLock(ctx context.Context, v storage.Volume, reason string) error {
	vl, err := b.resolve(v)
	if err != nil {
		return fmt.Errorf("break lock: %w", err)
	}
	if strings.TrimSpace(reason) == "" {
		return volErr("break lock", v, fmt.Errorf("a reason is required: %w", config.ErrInvalid))
	}
	unlock, err := b.locks.Lock(ctx, v.Policy, v.Name)
	if err != nil {
		return volErr("break lock", v, err)
	}
	defer unlock()
	if err := b.breakLock(ctx, vl, reason); err != nil {
		return volErr("break lock", v, err)
	}
	return nil
}

func (b *Backend) breakLock(ctx context.Context, vl vol, reason string) error {
	if m, err := fsutil.MountAt(vl.mount); err != nil || m != nil {
		return errors.Join(err, fmt.Errorf("mounted on this host at %s: %w", vl.mount, storage.ErrInUse))
	}
	if mp, err := b.getMapper(ctx); err == nil {
		dev, err := mp.Device(ctx, vl.mapperImage())
		if err != nil {
			return err
		}
		if dev != "" {
			return fmt.Errorf("mapped on this host at %s: %w", dev, storage.ErrInUse)
		}
	} else if !errors.Is(err, mapper.ErrUnavailable) {
		return err
	}
	conn, err := b.conn(ctx, vl.client)
	if err != nil {
		return err
	}
	img, done, err := b.openVolume(ctx, vl, false)
	if err != nil {
		return err
	}
	defer done()
	hs, err := holders(conn, img)
	if err != nil || len(hs) == 0 {
		return err
	}
	for _, h := range hs {
		if h.addr != "" {
			if err := b.blocklist(conn, h.addr); err != nil {
				return err
			}
		}
	}
	for _, h := range hs {
		// Breaking the managed lock blocklists its owner too (librbd's
		// rbd_blocklist_on_break_lock), which covers an owner without a
		// watch. ENOENT: the lock went with the blocklisted watch.
		if h.locked {
			if err := img.LockBreak(rbd.LockModeExclusive, h.client); err != nil && !errors.Is(cephErr(err), storage.ErrNotFound) {
				return fmt.Errorf("break lock of %s on %s: %w", h.client, vl.spec(), cephErr(err))
			}
		}
	}
	// Our later operations carry an OSD map epoch that includes the
	// blocklist, so the OSDs refuse the old clients from then on.
	if err := conn.WaitForLatestOSDMap(); err != nil {
		return fmt.Errorf("wait for osd map: %w", cephErr(err))
	}
	if err := b.waitReleased(ctx, conn, img, vl); err != nil {
		return err
	}
	note := fmt.Sprintf("%s by %s: %s (fenced %s)", time.Now().UTC().Format(time.RFC3339), b.cfg.Host, reason, describe(hs))
	if err := img.SetMetadata(metaBroken, note); err != nil {
		return fmt.Errorf("record lock break on %s: %w", vl.spec(), cephErr(err))
	}
	return nil
}

// blocklist adds addr to the OSD blocklist.
func (b *Backend) blocklist(conn *rados.Conn, addr string) error {
	cmd, err := json.Marshal(map[string]any{
		"prefix":      "osd blocklist",
		"blocklistop": "add",
		"addr":        addr,
		// The mon wants a JSON float, and a whole float64 marshals as an
		// integer ("bad or missing field 'expire'").
		"expire": json.Number(strconv.FormatFloat(b.cfg.BlocklistExpiry.Seconds(), 'f', 1, 64)),
	})
	if err != nil {
		return err
	}
	if _, status, err := conn.MonCommand(cmd); err != nil {
		return fmt.Errorf("blocklist %s: %w (%s)", addr, cephErr(err), status)
	}
	return nil
}

// waitReleased waits until the OSD has dropped the blocklisted clients'
// watches and no lock is held, so that a Mount right after BreakLock finds
// the image free.
func (b *Backend) waitReleased(ctx context.Context, conn *rados.Conn, img *rbd.Image, vl vol) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		hs, err := holders(conn, img)
		if err != nil {
			return err
		}
		if len(hs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("image %s still held by %s after blocklisting: %w", vl.spec(), describe(hs), ctx.Err())
		case <-tick.C:
		}
	}
}
