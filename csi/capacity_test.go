package csi_test

import (
	"context"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// GetCapacity on the local backend: the data dir's free space for a
// policy, the same once (one store) for all policies together, mount-only
// policies left out; none for capabilities no volume of the policy can
// have; the policy's max-size as the largest volume; bad parameters
// refused.
func TestGetCapacity(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	dir := t.TempDir()
	c.cleanMounts(t, dir)
	cl := dial(t, c.startPlugin(t, "node1", dir))
	ctx := context.Background()
	for name, doc := range map[string]string{
		"policy2": `{"backend":"local","create":{"size":"64MB"},"limits":{"max-size":"1GiB"}}`,
		"shared":  `{"backend":"nfs","driver":{"options":{"source":"srv:/x"}}}`,
	} {
		if _, _, err := c.api.PutPolicy(ctx, name, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.dataDir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	near := func(n int64) bool { return n > free/2 && n < free*2 } // other writers on the machine move it a little

	one, err := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: map[string]string{"policy": c.policy}, VolumeCapabilities: []*csipb.VolumeCapability{writer}})
	if err != nil || !near(one.GetAvailableCapacity()) || one.GetMaximumVolumeSize() != nil {
		t.Errorf("GetCapacity(%s) = %v, %v; statfs says %d free", c.policy, one, err, free)
	}
	limited, err := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: map[string]string{"policy": "policy2"}})
	if err != nil || limited.GetMaximumVolumeSize().GetValue() != 1<<30 {
		t.Errorf("GetCapacity(policy2) = %v, %v; want the max-size 1GiB as the largest volume", limited, err)
	}
	all, err := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{})
	// Two local policies share one data dir: counted once, not twice.
	if d := all.GetAvailableCapacity() - one.GetAvailableCapacity(); err != nil || d > free/4 || d < -free/4 {
		t.Errorf("GetCapacity() = %v, %v; one policy's is %d", all, err, one.GetAvailableCapacity())
	}
	for what, caps := range map[string][]*csipb.VolumeCapability{
		"raw block": {{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}},
		"multi-node writers of a locked volume": {mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
	} {
		for _, params := range []map[string]string{{"policy": c.policy}, nil} {
			got, err := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: params, VolumeCapabilities: caps})
			if err != nil || got.GetAvailableCapacity() != 0 {
				t.Errorf("GetCapacity for %s (parameters %v) = %v, %v; want no space", what, params, got, err)
			}
		}
	}
	for what, params := range map[string]map[string]string{
		"no policy":        {"filesystem": "ext4"},
		"unknown policy":   {"policy": "nosuch"},
		"bad option":       {"policy": c.policy, "snapshots": "maybe"},
		"mount-only (nfs)": {"policy": "shared"},
	} {
		_, err := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: params})
		wantCode(t, what, err, codes.InvalidArgument)
	}
}
