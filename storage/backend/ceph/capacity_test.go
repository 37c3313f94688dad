//go:build cgo && pacific

package ceph

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

// Capacity is the pool's MAX AVAIL as `ceph df` reports it, for a client
// with only the rbd profile too; a byte quota caps it; a pool that does
// not exist is ErrNotFound.
func TestCapacity(t *testing.T) {
	b := newBackend(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := b.Capacity(ctx, storage.Volume{Policy: testPolicy(t), Pool: "rbd"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "ceph", "-c", cephConf(t), "--connect-timeout", "20", "df", "-f", "json").Output()
	if err != nil {
		t.Fatalf("ceph df: %v", err)
	}
	var df struct {
		Pools []struct {
			Name  string
			Stats struct {
				MaxAvail int64 `json:"max_avail"`
			}
		}
	}
	if err := json.Unmarshal(out, &df); err != nil {
		t.Fatal(err)
	}
	want := int64(-1)
	for _, p := range df.Pools {
		if p.Name == "rbd" {
			want = p.Stats.MaxAvail
		}
	}
	// Other tests write to the cluster meanwhile: close, not equal.
	if want <= 0 || c.Available < want/2 || c.Available > want*2 {
		t.Errorf("Capacity(rbd) = %d, ceph df says MAX AVAIL %d", c.Available, want)
	}
	if !strings.HasPrefix(c.Store, "ceph:") || !strings.HasSuffix(c.Store, "/rbd") {
		t.Errorf("Store = %q", c.Store)
	}

	conn := adminConn(t)
	user, keyring := createUser(t, conn, testPolicy(t))
	restricted, err := b.Capacity(ctx, storage.Volume{Pool: "rbd", Options: map[string]string{OptUser: user, OptKeyring: keyring}})
	if err != nil || restricted.Store != c.Store {
		t.Errorf("Capacity as an rbd-profile user = %+v, %v", restricted, err)
	}

	// A pool of its own carries the quota: the shared rbd pool must not.
	pool := testPolicy(t)
	mon := func(cmd map[string]any) {
		t.Helper()
		if err := monJSON(conn, cmd, &json.RawMessage{}); err != nil && !strings.Contains(err.Error(), "unexpected end of JSON") {
			t.Fatal(err)
		}
	}
	mon(map[string]any{"prefix": "osd pool create", "pool": pool, "pg_num": 1, "pgp_num": 1})
	t.Cleanup(func() {
		cmd, _ := json.Marshal(map[string]any{"prefix": "osd pool rm", "pool": pool, "pool2": pool, "yes_i_really_really_mean_it": true})
		if _, status, err := conn.MonCommand(cmd); err != nil {
			t.Errorf("remove pool %s: %v (%s)", pool, err, status)
		}
	})
	mon(map[string]any{"prefix": "osd pool set-quota", "pool": pool, "field": "max_bytes", "val": "50000000"})
	// A new pool has no statistics until the mgr reports them.
	var q storage.Capacity
	for err = config.ErrUnavailable; errors.Is(err, config.ErrUnavailable) && ctx.Err() == nil; {
		q, err = b.Capacity(ctx, storage.Volume{Pool: pool})
		time.Sleep(200 * time.Millisecond) // polling interval while the mgr reports
	}
	if err != nil || q.Available != 50000000 || q.Store == c.Store {
		t.Errorf("Capacity of a pool with a 50 MB quota = %+v, %v", q, err)
	}
	if _, err := b.Capacity(ctx, storage.Volume{Pool: "nosuchpool" + pool}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Capacity of a missing pool = %v, want ErrNotFound", err)
	}
}
