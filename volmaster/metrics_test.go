package volmaster

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/internal/metrictest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// samples gathers reg and returns family name's samples, keyed by their
// labels as k=v,k=v (gauge, counter or untyped value; a histogram's count).
func samples(t *testing.T, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	out, err := metrictest.Samples(reg, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The etcd endpoint's database size and quota are read at scrape time; the
// backend call error series exist before any call.
func TestMetricsReportEtcdSizeAndQuota(t *testing.T) {
	h := start(t)
	eps := h.srv.store.Client().Endpoints()
	// One scrape: etcd's size moves between two (a compaction, a write).
	scrape, err := metrictest.Scrape(h.srv.metrics.reg, "volmaster_etcd_db_size_bytes", "volmaster_etcd_quota_bytes", "volmaster_etcd_db_size_in_use_bytes")
	if err != nil {
		t.Fatal(err)
	}
	size, quota, inUse := scrape["volmaster_etcd_db_size_bytes"], scrape["volmaster_etcd_quota_bytes"], scrape["volmaster_etcd_db_size_in_use_bytes"]
	for _, ep := range eps {
		k := "endpoint=" + ep
		if size[k] <= 0 || inUse[k] <= 0 || inUse[k] > size[k] {
			t.Errorf("%s: db size %v, in use %v; want 0 < in use <= size", ep, size[k], inUse[k])
		}
		// The embedded test etcd runs with etcd's default quota, 2 GiB.
		if quota[k] != 2<<30 {
			t.Errorf("%s: quota %v, want %v", ep, quota[k], 2<<30)
		}
	}
	if len(size) != len(eps) || len(quota) != len(eps) {
		t.Errorf("sizes %v, quotas %v for endpoints %v", size, quota, eps)
	}
	bc := samples(t, h.srv.metrics.reg, "volmaster_backend_call_duration_seconds")
	if v, ok := bc["backend=local,op=create,result=error"]; !ok || v != 0 {
		t.Errorf("backend call series at start: %v; want local create errors at 0", bc)
	}
	h.must(t, 200, "PUT", "/v1/policies/p", `{"backend":"local","create":{"size":"8MB"}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	bc = samples(t, h.srv.metrics.reg, "volmaster_backend_call_duration_seconds")
	if bc["backend=local,op=create,result=ok"] != 1 || bc["backend=local,op=create,result=error"] != 0 {
		t.Errorf("after one create: %v", bc)
	}
}

// An etcd that does not answer costs a scrape the Status timeout, not the
// scrape: its series are left out and the rest is served.
func TestMetricsLeaveOutAnUnreachableEtcd(t *testing.T) {
	_, eps := etcdtest.Start(t)
	link := etcdtest.NewLink(t, eps[0])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{link.URL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	keys, _ := config.NewKeys("")
	lb, err := local.New(local.Config{DataDir: t.TempDir(), MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := serve(t, Config{Client: cli, EtcdTimeout: time.Second, Keys: keys, Backends: map[string]storage.CRUD{config.BackendLocal: lb}})
	if got := samples(t, srv.metrics.reg, "volmaster_etcd_db_size_bytes"); len(got) != 1 {
		t.Fatalf("before the cut: %v", got)
	}
	link.Cut()
	// One scrape (each costs the Status timeout now).
	fams, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		got[f.GetName()] = true
	}
	if got["volmaster_etcd_db_size_bytes"] || !got["volmaster_policies"] {
		t.Errorf("etcd cut off: families %v; want volmaster_policies and no volmaster_etcd_db_size_bytes", got)
	}
}
