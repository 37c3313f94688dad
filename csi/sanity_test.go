package csi_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/volplugin/volplugin/config"
)

// TestSanity runs the upstream CSI sanity suite against volcsi (controller
// and node in one process, as --mode all) with a real volmaster, real loop
// devices, filesystems and mounts: on the local backend, and again on Ceph
// (the scripts/ceph-dev cluster, images mapped with rbd-fuse + loop as on
// CI's kernel) when CEPH_CONF names one. Ginkgo runs one suite per
// process, so both backends are containers of one run.
func TestSanity(t *testing.T) {
	needRoot(t)
	local := sanityConfig(t, startCluster(t))
	ginkgo.Describe("volcsi on the local backend", func() { sanity.GinkgoTest(local) })
	if conf, why := cephForSanity(); why != "" {
		if os.Getenv("CI") == "true" && os.Getenv("CEPH_CONF") == "" {
			t.Fatal(why)
		}
		t.Logf("the Ceph run is skipped: %s", why)
	} else {
		onCeph := sanityConfig(t, startClusterOn(t, config.BackendCeph, conf))
		ginkgo.Describe("volcsi on Ceph", func() { sanity.GinkgoTest(onCeph) })
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, "CSI sanity")
}

// cephForSanity returns the Ceph cluster's conf, or why there is none.
func cephForSanity() (string, string) {
	conf := os.Getenv("CEPH_CONF")
	if conf == "" {
		return "", "CEPH_CONF unset: make test starts the cluster with scripts/ceph-dev"
	}
	if _, err := exec.LookPath("rbd-fuse"); err != nil {
		return "", "needs rbd-fuse: " + err.Error()
	}
	return conf, ""
}

// sanityConfig starts volcsi on c and returns the suite's configuration
// for it.
func sanityConfig(t *testing.T, c *cluster) *sanity.TestConfig {
	dir := t.TempDir()
	c.cleanMounts(t, dir)
	p := c.startPlugin(t, "node1", dir)
	cfg := sanity.NewTestConfig()
	cfg.Address = p.endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 96 << 20
	cfg.TestVolumeParameters = map[string]string{"policy": c.policy}
	cfg.IdempotentCount = 3
	return &cfg
}
