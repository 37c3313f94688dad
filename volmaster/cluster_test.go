package volmaster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
)

// GET /v1/cluster lists every running volmaster (each publishes itself on
// its own lease and is gone with it), the etcd members with their health
// and leader, and the volsupervisor leader from its election.
func TestClusterView(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	cfg := Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{}}
	a, urlA := serve(t, cfg)
	b, urlB := serve(t, cfg)
	h := &harness{srv: a, url: urlA}
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	a.Register(ctxA, urlA)
	b.Register(t.Context(), urlB)

	view := func() config.ClusterStatus {
		t.Helper()
		var st config.ClusterStatus
		if err := json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/cluster", "")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor := func(what string, ok func(config.ClusterStatus) bool) config.ClusterStatus {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := view()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s in 30s: %+v", what, st)
			}
			time.Sleep(20 * time.Millisecond) // polling the view, with the deadline above
		}
	}
	st := waitFor("two volmasters", func(st config.ClusterStatus) bool { return len(st.Volmasters) == 2 })
	urls := map[string]bool{}
	for _, v := range st.Volmasters {
		urls[v.URL] = true
		if v.Version == "" || v.Started.IsZero() || v.PID == 0 {
			t.Errorf("volmaster record lacks version, start or PID: %+v", v)
		}
	}
	if !urls[urlA] || !urls[urlB] || st.Answered != a.id {
		t.Fatalf("volmasters %+v answered by %s; want %s and %s, answered by %s", st.Volmasters, st.Answered, urlA, urlB, a.id)
	}
	if len(st.Etcd) != 1 || !st.Etcd[0].Healthy || !st.Etcd[0].Leader || st.EtcdError != "" {
		t.Fatalf("etcd members %+v (%s); want one healthy leader", st.Etcd, st.EtcdError)
	}
	if st.SupervisorLeader != "" {
		t.Fatalf("supervisor leader %q with none running", st.SupervisorLeader)
	}

	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := concurrency.NewElection(sess, keys.Leader()).Campaign(t.Context(), "sup1"); err != nil {
		t.Fatal(err)
	}
	if st := view(); st.SupervisorLeader != "sup1" {
		t.Fatalf("supervisor leader %q, want sup1", st.SupervisorLeader)
	}

	// The registration follows the global TTL: a volmaster killed with -9
	// drops out of the view after the TTL in force.
	h.must(t, 200, "PUT", "/v1/global", `{"TTL": 7}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cli.Get(t.Context(), keys.Volmaster(a.id))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 {
			ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
			if err != nil {
				t.Fatal(err)
			}
			if ttl.GrantedTTL == 7 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration of a not on a lease of the new TTL 7 within 30s: %v", resp.Kvs)
		}
		time.Sleep(20 * time.Millisecond) // polling etcd, with the deadline above
	}

	// a stops: its record goes with its lease.
	stopA()
	st = waitFor("volmaster a gone", func(st config.ClusterStatus) bool { return len(st.Volmasters) == 1 })
	if st.Volmasters[0].URL != urlB {
		t.Fatalf("left %+v, want only %s", st.Volmasters, urlB)
	}
}
