package csi

import (
	"context"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/volplugin/volplugin/config"
)

// GetCapacity reports the space left for new volumes, as volmaster's
// backends tell it (GET /v1/policies/{policy}/capacity). With the
// StorageClass parameters it is the space of that policy's backend (its
// pool, on Ceph), and the policy's limits.max-size the largest volume; with
// none it is the sum over every policy this controller may see, each store
// (a data dir, a pool) counted once, mount-only policies left out.
// Capabilities no volume of the policy could have, and a topology its
// volumes are not usable in, leave no space for it.
func (c controller) GetCapacity(ctx context.Context, req *csipb.GetCapacityRequest) (*csipb.GetCapacityResponse, error) {
	caps := req.GetVolumeCapabilities()
	if err := checkCapabilityFields(caps...); err != nil {
		return nil, statusError(err)
	}
	if len(req.GetParameters()) == 0 {
		n, err := c.totalCapacity(ctx, caps, req.GetAccessibleTopology())
		if err != nil {
			return nil, statusError(err)
		}
		return &csipb.GetCapacityResponse{AvailableCapacity: n}, nil
	}
	policy, opts, err := volumeOptions(req.GetParameters(), nil)
	if err != nil {
		return nil, statusError(err)
	}
	p, err := c.parameterPolicy(ctx, policy)
	if err != nil {
		return nil, statusError(err)
	}
	fit, err := fitsPolicy(p, opts, caps)
	if err != nil {
		return nil, statusError(err)
	}
	resp := &csipb.GetCapacityResponse{}
	if p.Limits.MaxSize != "" {
		if n, err := config.ParseSize(p.Limits.MaxSize); err == nil {
			resp.MaximumVolumeSize = wrapperspb.Int64(n)
		}
	}
	if !fit {
		return resp, nil
	}
	capa, err := c.s.cfg.API.Capacity(ctx, policy)
	if err != nil {
		return nil, statusError(err)
	}
	if ok, err := inTopology(capa, p.Backends, req.GetAccessibleTopology()); err != nil || !ok {
		return resp, statusError(err)
	}
	resp.AvailableCapacity = capa.AvailableBytes
	return resp, nil
}

// totalCapacity sums the space of every store the visible policies create
// volumes in that fit caps and are usable in topo (nil: anywhere), each
// store once.
func (c controller) totalCapacity(ctx context.Context, caps []*csipb.VolumeCapability, topo *csipb.Topology) (int64, error) {
	pols, err := c.s.cfg.API.PoliciesDetail(ctx)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	var total int64
	for _, p := range pols {
		if p.Backends.CRUD == "" {
			continue
		}
		if len(caps) > 0 {
			// A policy no volume can be made of without options has none
			// that fits.
			if fit, err := fitsPolicy(p, nil, caps); err != nil || !fit {
				continue
			}
		}
		capa, err := c.s.cfg.API.Capacity(ctx, p.Name)
		if err != nil {
			return 0, err
		}
		if ok, err := inTopology(capa, p.Backends, topo); err != nil {
			return 0, err
		} else if !ok {
			continue
		}
		if !seen[capa.Store] {
			seen[capa.Store] = true
			total += capa.AvailableBytes
		}
	}
	return total, nil
}

// fitsPolicy tells whether a volume of p made with opts could have caps,
// checked on the volume volmaster would make (the name does not matter).
func fitsPolicy(p config.Policy, opts map[string]string, caps []*csipb.VolumeCapability) (bool, error) {
	v, err := config.NewVolume(config.VolumeRef{Policy: p.Name, Name: "capacity"}, p, 0, opts, time.Now())
	if err != nil {
		return false, err
	}
	return checkCapabilities(&v, caps) == "", nil
}

// inTopology tells whether volumes of a policy with backends b, whose
// capacity answer is capa, are usable in topo (nil: anywhere asked).
func inTopology(capa config.Capacity, b config.Backends, topo *csipb.Topology) (bool, error) {
	if topo == nil {
		return true, nil
	}
	acc, err := storeTopology(capa, b)
	return err == nil && reaches(acc, topo), err
}
