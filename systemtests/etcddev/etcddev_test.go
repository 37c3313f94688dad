package etcddev

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A write survives the leader's SIGKILL: the other two elect a new leader
// and answer; the killed member comes back with the data written meanwhile.
func TestKillLeaderAndRestart(t *testing.T) {
	c := Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "before"); err != nil {
		t.Fatal(err)
	}
	old := c.Leader(t)
	if c.Endpoint(old) == "" {
		t.Fatalf("leader %q is not a member", old)
	}
	c.Kill(t, old)
	// A write sent before the others notice may be forwarded to the dead
	// leader and time out (etcd does not retry it: it may have applied);
	// once a new leader is elected, writes go through.
	if now := c.Leader(t); now == old {
		t.Fatalf("leader is still %s after its SIGKILL", old)
	}
	if _, err := cli.Put(ctx, "k", "after"); err != nil {
		t.Fatalf("put with the leader killed: %v", err)
	}
	c.Restart(t, old)
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoint(old)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	// A linearizable read through the restarted member: it has caught up.
	got, err := one.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "after" {
		t.Fatalf("restarted member reads %v, want after", got.Kvs)
	}
	st, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 3 {
		t.Fatalf("%d members, want 3", len(st.Members))
	}
}
