package csi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// Topology keys. Every node reports its host label; a node whose local
// data dir is volmaster's (the volmaster's host, or a host sharing the
// directory) also reports the directory's identity. Local-backend volumes
// are images in that directory, usable only on those nodes: they carry the
// identity as their accessible topology. Every other volume (Ceph, nfs)
// is usable on any node that reaches the cluster or server, and carries
// none.
const (
	TopologyHost       = "topology.csi.volplugin.io/host"
	TopologyLocalStore = "topology.csi.volplugin.io/local-store"
)

// errTopology marks a volume that would be usable in none of the
// topologies a CreateVolume requires.
var errTopology = errors.New("not accessible from the required topology")

// nodeTopology is what NodeGetInfo reports for this node.
func (s *Server) nodeTopology() (*csipb.Topology, error) {
	seg := map[string]string{TopologyHost: s.cfg.Node.HostLabel()}
	if s.cfg.LocalDataDir != "" {
		id, err := local.ReadStoreID(s.cfg.LocalDataDir)
		if err != nil {
			return nil, err
		}
		if id != "" {
			seg[TopologyLocalStore] = id
		}
	}
	return &csipb.Topology{Segments: seg}, nil
}

// accessibleFrom is where volumes of policy mounted by backends b can be
// used: nil for every node, or the local data dir's identity, which
// volmaster's capacity answer names.
func (c controller) accessibleFrom(ctx context.Context, policy string, b config.Backends) (*csipb.Topology, error) {
	if b.Mount != config.BackendLocal {
		return nil, nil
	}
	capa, err := c.s.cfg.API.Capacity(ctx, policy)
	if err != nil {
		return nil, fmt.Errorf("where volumes of policy %s are usable: %w", policy, err)
	}
	return storeTopology(capa, b)
}

// storeTopology is accessibleFrom when volmaster's capacity answer for the
// policy is at hand.
func storeTopology(capa config.Capacity, b config.Backends) (*csipb.Topology, error) {
	if b.Mount != config.BackendLocal {
		return nil, nil
	}
	id, ok := strings.CutPrefix(capa.Store, local.StorePrefix)
	if !ok {
		return nil, fmt.Errorf("policy %s: store %q is not a local data dir", capa.Policy, capa.Store)
	}
	return &csipb.Topology{Segments: map[string]string{TopologyLocalStore: id}}, nil
}

// reaches tells whether a volume accessible from acc (nil: every node) is
// usable in topology t.
func reaches(acc, t *csipb.Topology) bool {
	for k, v := range acc.GetSegments() {
		if t.GetSegments()[k] != v {
			return false
		}
	}
	return true
}

// placement is accessibleFrom, refusing a volume that none of the
// requisite topologies of req reaches (the spec's ResourceExhausted).
func (c controller) placement(ctx context.Context, policy string, b config.Backends, req *csipb.TopologyRequirement) (*csipb.Topology, error) {
	acc, err := c.accessibleFrom(ctx, policy, b)
	if err != nil || acc == nil || len(req.GetRequisite()) == 0 {
		return acc, err
	}
	for _, t := range req.GetRequisite() {
		if reaches(acc, t) {
			return acc, nil
		}
	}
	return nil, fmt.Errorf("volumes of policy %s are images in volmaster's local data dir (%s %s), which none of the requisite topologies sees: %w",
		policy, TopologyLocalStore, acc.Segments[TopologyLocalStore], errTopology)
}
