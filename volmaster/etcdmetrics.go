package volmaster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/volplugin/volplugin/config/store"
)

// scrapeStatusTimeout bounds the status calls of one scrape (all endpoints
// at once), well under Prometheus' default 10 s scrape timeout.
const scrapeStatusTimeout = 3 * time.Second

var (
	descEtcdDBSize = prometheus.NewDesc("volmaster_etcd_db_size_bytes",
		"Size of the etcd member's database file.", []string{"endpoint"}, nil)
	descEtcdDBInUse = prometheus.NewDesc("volmaster_etcd_db_size_in_use_bytes",
		"Bytes of the etcd member's database file in use (the rest is freed by compaction, returned by a defragmentation).", []string{"endpoint"}, nil)
	descEtcdQuota = prometheus.NewDesc("volmaster_etcd_quota_bytes",
		"The etcd member's backend quota: past it etcd raises NOSPACE and refuses writes (etcd 3.6 or newer reports it).", []string{"endpoint"}, nil)
)

// etcdCollector reports, at scrape time, the database size and quota of
// every etcd endpoint volmaster talks to. An endpoint that does not answer
// within the timeout reports nothing (volmaster's /healthz and 5xx answers
// tell that story).
type etcdCollector struct {
	store *store.Store
}

func newEtcdCollector(st *store.Store) *etcdCollector { return &etcdCollector{store: st} }

func (c *etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEtcdDBSize
	ch <- descEtcdDBInUse
	ch <- descEtcdQuota
}

func (c *etcdCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.store.EndpointStatus(context.Background(), scrapeStatusTimeout, c.store.Client().Endpoints()) {
		if a.Err != nil {
			continue
		}
		st, ep := a.Status, a.Endpoint
		ch <- prometheus.MustNewConstMetric(descEtcdDBSize, prometheus.GaugeValue, float64(st.DbSize), ep)
		ch <- prometheus.MustNewConstMetric(descEtcdDBInUse, prometheus.GaugeValue, float64(st.DbSizeInUse), ep)
		if st.DbSizeQuota > 0 {
			ch <- prometheus.MustNewConstMetric(descEtcdQuota, prometheus.GaugeValue, float64(st.DbSizeQuota), ep)
		}
	}
}
