package volmaster

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdStatusTimeout bounds the Status calls of one scrape (all endpoints
// together), well under Prometheus' default 10 s scrape timeout.
const etcdStatusTimeout = 3 * time.Second

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
	cli *clientv3.Client
}

func newEtcdCollector(cli *clientv3.Client) *etcdCollector { return &etcdCollector{cli: cli} }

func (c *etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEtcdDBSize
	ch <- descEtcdDBInUse
	ch <- descEtcdQuota
}

func (c *etcdCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdStatusTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ep := range c.cli.Endpoints() {
		wg.Go(func() {
			st, err := c.cli.Status(ctx, ep)
			if err != nil {
				return
			}
			ch <- prometheus.MustNewConstMetric(descEtcdDBSize, prometheus.GaugeValue, float64(st.DbSize), ep)
			ch <- prometheus.MustNewConstMetric(descEtcdDBInUse, prometheus.GaugeValue, float64(st.DbSizeInUse), ep)
			if st.DbSizeQuota > 0 {
				ch <- prometheus.MustNewConstMetric(descEtcdQuota, prometheus.GaugeValue, float64(st.DbSizeQuota), ep)
			}
		})
	}
	wg.Wait()
}
