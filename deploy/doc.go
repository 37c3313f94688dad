// Package deploy holds what operators deploy beside volplugin's daemons:
// the Prometheus scrape configuration and alert rules (prometheus/) and a
// Grafana dashboard (grafana/). deploy_test.go checks them with Debian's
// promtool (rules, their unit tests, the configuration, the dashboard's
// queries), checks that every metric they use is one the daemons export,
// and that every alert has its runbook in docs/troubleshooting.md and names
// real volcli commands. systemtests/prometheus_test.go has a real
// Prometheus scrape the daemons and find every one of those metrics.
// kubernetes/ holds volcsi's manifests (CSIDriver, RBAC, the controller
// Deployment, the node DaemonSet, a StorageClass, a VolumeSnapshotClass);
// kubernetes_test.go decodes each strictly with k8s.io/api's types (the
// VolumeSnapshotClass with external-snapshotter's) and checks that they agree
// with volcsi (driver name, flags, socket paths, volume options).
package deploy
