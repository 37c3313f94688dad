package csi_test

import (
	"context"
	"maps"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/csi"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// Topology, on each backend: the node reports its host label, and the
// identity of volmaster's local data dir where it sees it. A local volume is
// usable only there: CreateVolume says so, refuses (ResourceExhausted,
// creating nothing) when no requisite topology sees the data dir, and
// GetCapacity has no space for such a topology. A Ceph volume is usable on
// every node: no topology, and any requisite is met.
func TestTopology(t *testing.T) {
	needRoot(t)
	backends := map[string]*cluster{"local": startCluster(t)}
	if conf, why := cephForSanity(); why == "" {
		backends["ceph"] = startClusterOn(t, config.BackendCeph, conf)
	} else {
		t.Logf("Ceph case skipped: %s", why)
	}
	for name, c := range backends {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c.cleanMounts(t, dir)
			cl := dial(t, c.startPlugin(t, "node1", dir))
			ctx := context.Background()
			id, err := local.ReadStoreID(c.dataDir)
			if err != nil {
				t.Fatal(err)
			}
			info, err := cl.NodeGetInfo(ctx, &csipb.NodeGetInfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{csi.TopologyHost: "node1"}
			if name == "local" {
				want[csi.TopologyLocalStore] = id
			}
			if got := info.GetAccessibleTopology().GetSegments(); !maps.Equal(got, want) {
				t.Errorf("node topology %v, want %v", got, want)
			}
			elsewhere := &csipb.Topology{Segments: map[string]string{csi.TopologyHost: "node2", csi.TopologyLocalStore: "00000000000000000000000000000000"}}
			create := func(name string, requisite ...*csipb.Topology) (*csipb.CreateVolumeResponse, error) {
				req := &csipb.CreateVolumeRequest{Name: name, Parameters: map[string]string{"policy": c.policy}, VolumeCapabilities: []*csipb.VolumeCapability{writer}}
				if requisite != nil {
					req.AccessibilityRequirements = &csipb.TopologyRequirement{Requisite: requisite, Preferred: requisite[:1]}
				}
				return cl.CreateVolume(ctx, req)
			}
			v, err := create("here", info.GetAccessibleTopology())
			if err != nil {
				t.Fatal(err)
			}
			acc := v.GetVolume().GetAccessibleTopology()
			switch {
			case name == "local" && (len(acc) != 1 || !maps.Equal(acc[0].GetSegments(), map[string]string{csi.TopologyLocalStore: id})):
				t.Errorf("local volume's topology %v, want the data dir %s", acc, id)
			case name == "ceph" && len(acc) != 0:
				t.Errorf("Ceph volume's topology %v, want none (every node)", acc)
			}
			// ListVolumes gives the same topology as CreateVolume did.
			list, err := cl.ListVolumes(ctx, &csipb.ListVolumesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range list.GetEntries() {
				if e.GetVolume().GetVolumeId() != v.GetVolume().GetVolumeId() {
					continue
				}
				found = true
				got := e.GetVolume().GetAccessibleTopology()
				if len(got) != len(acc) || (len(acc) == 1 && !maps.Equal(got[0].GetSegments(), acc[0].GetSegments())) {
					t.Errorf("ListVolumes gives topology %v, CreateVolume gave %v", got, acc)
				}
			}
			if !found {
				t.Errorf("ListVolumes %v lacks %s", list.GetEntries(), v.GetVolume().GetVolumeId())
			}
			// Again, the same answer (idempotent), and with a requisite that
			// includes another node too.
			if again, err := create("here", elsewhere, info.GetAccessibleTopology()); err != nil || len(again.GetVolume().GetAccessibleTopology()) != len(acc) {
				t.Errorf("CreateVolume again = %v, %v", again, err)
			}
			_, err = create("there", elsewhere)
			capa, cerr := cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: map[string]string{"policy": c.policy}, AccessibleTopology: elsewhere})
			if name == "local" {
				wantCode(t, "CreateVolume for a node without the data dir", err, codes.ResourceExhausted, csi.TopologyLocalStore)
				if _, err := c.api.Volume(ctx, config.VolumeRef{Policy: c.policy, Name: "there"}); err == nil {
					t.Error("the refused CreateVolume made the volume")
				}
				if cerr != nil || capa.GetAvailableCapacity() != 0 {
					t.Errorf("GetCapacity for a node without the data dir = %v, %v; want none", capa, cerr)
				}
			} else if err != nil || cerr != nil || capa.GetAvailableCapacity() <= 0 {
				t.Errorf("Ceph volume for another node: %v; capacity there %v, %v", err, capa, cerr)
			}
			capa, err = cl.GetCapacity(ctx, &csipb.GetCapacityRequest{Parameters: map[string]string{"policy": c.policy}, AccessibleTopology: info.GetAccessibleTopology()})
			if err != nil || capa.GetAvailableCapacity() <= 0 {
				t.Errorf("GetCapacity for this node = %v, %v", capa, err)
			}
			for _, n := range []string{"here", "there"} {
				if _, err := cl.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: c.policy + "/" + n}); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
