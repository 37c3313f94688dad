package csi_test

import (
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs the upstream CSI sanity suite against volcsi (controller
// and node in one process, as --mode all) with a real volmaster on the
// local backend: real loop devices, filesystems and mounts.
func TestSanity(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	dir := t.TempDir()
	cleanMounts(t, dir, c.dataDir)
	p := c.startPlugin(t, "node1", dir)

	cfg := sanity.NewTestConfig()
	cfg.Address = p.endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 96 << 20
	cfg.TestVolumeParameters = map[string]string{"policy": "policy1"}
	cfg.IdempotentCount = 3
	sanity.Test(t, cfg)
}
