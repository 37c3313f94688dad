package csi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/volplugin/volplugin/config"
)

// ParamPolicy is the StorageClass parameter naming the volume's policy.
// Every other parameter is a volume option, as docker volume create -o
// takes them (config.VolumeOptions), except those with the prefix
// kubernetesPrefix, which Kubernetes' sidecars add for themselves.
const ParamPolicy = "policy"

// kubernetesPrefix starts the parameters the external-provisioner reserves.
const kubernetesPrefix = "csi.storage.k8s.io/"

// controller serves the CSI Controller service through volmaster.
type controller struct {
	csipb.UnimplementedControllerServer
	s *Server
}

func (c controller) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	var caps []*csipb.ControllerServiceCapability
	for _, t := range controllerCapabilities {
		caps = append(caps, &csipb.ControllerServiceCapability{Type: &csipb.ControllerServiceCapability_Rpc{
			Rpc: &csipb.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// controllerCapabilities are what the controller offers. No publish step:
// the mount lock is taken where the volume is mounted (NodeStageVolume).
var controllerCapabilities = []csipb.ControllerServiceCapability_RPC_Type{
	csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csipb.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csipb.ControllerServiceCapability_RPC_GET_CAPACITY,
	csipb.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csipb.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csipb.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csipb.ControllerServiceCapability_RPC_GET_SNAPSHOT,
}

// CreateVolume creates policy/VolumeName(name) with the parameters as
// volume options, or returns the volume a previous call made when it fits
// the request (else AlreadyExists).
func (c controller) CreateVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	v, err := c.createVolume(ctx, req)
	if err != nil {
		return nil, statusError(err)
	}
	size, err := sizeBytes(&v)
	if err != nil {
		return nil, statusError(err)
	}
	// Checked again for a volume a previous call made.
	acc, err := c.placement(ctx, v.Policy, v.Backends, req.GetAccessibilityRequirements())
	if err != nil {
		return nil, statusError(err)
	}
	resp := &csipb.CreateVolumeResponse{Volume: &csipb.Volume{
		VolumeId: v.Ref().String(), CapacityBytes: size,
		VolumeContext: map[string]string{ParamPolicy: v.Policy, "name": v.Name},
		ContentSource: req.GetVolumeContentSource(),
	}}
	if acc != nil {
		resp.Volume.AccessibleTopology = []*csipb.Topology{acc}
	}
	return resp, nil
}

func (c controller) createVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (config.Volume, error) {
	if req.GetName() == "" {
		return config.Volume{}, missing("name")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return config.Volume{}, missing("volume capabilities")
	}
	if err := checkCapabilityFields(req.GetVolumeCapabilities()...); err != nil {
		return config.Volume{}, err
	}
	src := req.GetVolumeContentSource()
	if src != nil && src.GetSnapshot() == nil {
		return config.Volume{}, fmt.Errorf("cloning a volume is not offered (only a snapshot as content source): %w", config.ErrInvalid)
	}
	policy, opts, err := volumeOptions(req.GetParameters(), req.GetCapacityRange())
	if err != nil {
		return config.Volume{}, err
	}
	ref := config.VolumeRef{Policy: policy, Name: VolumeName(req.GetName())}
	v, err := c.s.cfg.API.Volume(ctx, ref)
	if err == nil {
		return v, fitsExisting(&v, req)
	}
	if !errors.Is(err, config.ErrNotFound) {
		return config.Volume{}, err
	}
	if src != nil {
		return c.createFromSnapshot(ctx, ref, src.GetSnapshot().GetSnapshotId(), req)
	}
	p, err := c.parameterPolicy(ctx, policy)
	if err != nil {
		return config.Volume{}, err
	}
	// The same validation volmaster runs on docker volume create -o, here
	// first so that capabilities are checked against the volume it would
	// make before anything is created.
	want, err := config.NewVolume(ref, p, 0, opts, time.Now())
	if err != nil {
		return config.Volume{}, err
	}
	if why := checkCapabilities(&want, req.GetVolumeCapabilities()); why != "" {
		return config.Volume{}, fmt.Errorf("%s: %w", why, config.ErrInvalid)
	}
	if err := fitsRange(&want, req.GetCapacityRange()); err != nil {
		return config.Volume{}, err
	}
	if _, err := c.placement(ctx, policy, want.Backends, req.GetAccessibilityRequirements()); err != nil {
		return config.Volume{}, err
	}
	v, err = c.s.cfg.API.CreateVolume(ctx, config.VolumeRequest{Policy: ref.Policy, Name: ref.Name, Options: opts})
	if errors.Is(err, config.ErrExists) {
		// A concurrent CreateVolume of the same name won.
		if v, err = c.s.cfg.API.Volume(ctx, ref); err == nil {
			return v, fitsExisting(&v, req)
		}
	}
	return v, err
}

// volumeOptions splits the StorageClass parameters into the policy and the
// volume options, the capacity range's required bytes becoming the size.
func volumeOptions(params map[string]string, rng *csipb.CapacityRange) (string, map[string]string, error) {
	policy := params[ParamPolicy]
	if policy == "" {
		return "", nil, fmt.Errorf("parameter %s (the volume's policy) is required: %w", ParamPolicy, config.ErrInvalid)
	}
	if err := config.ValidateName("policy", policy); err != nil {
		return "", nil, fmt.Errorf("parameter %s: %w", ParamPolicy, err)
	}
	opts := map[string]string{}
	for k, val := range params {
		if k != ParamPolicy && !strings.HasPrefix(k, kubernetesPrefix) {
			opts[k] = val
		}
	}
	req, lim := rng.GetRequiredBytes(), rng.GetLimitBytes()
	if req < 0 || lim < 0 || (lim > 0 && req > lim) {
		return "", nil, fmt.Errorf("capacity range %d..%d is not a range: %w", req, lim, config.ErrInvalid)
	}
	if _, ok := opts[config.OptSize]; ok && (req > 0 || lim > 0) {
		return "", nil, fmt.Errorf("parameter %s and a capacity range both set the size: the claim's capacity is the size: %w", config.OptSize, config.ErrInvalid)
	}
	if req > 0 {
		opts[config.OptSize] = strconv.FormatInt(req, 10)
	}
	return policy, opts, nil
}

// parameterPolicy is the policy the StorageClass parameter names; one that
// does not exist is bad input, not a missing object.
func (c controller) parameterPolicy(ctx context.Context, name string) (config.Policy, error) {
	p, err := c.s.cfg.API.Policy(ctx, name)
	if errors.Is(err, config.ErrNotFound) {
		return config.Policy{}, fmt.Errorf("parameter %s: policy %q does not exist: %w", ParamPolicy, name, config.ErrInvalid)
	}
	return p, err
}

// sizeBytes is v's size, 0 for a volume without one (nfs).
func sizeBytes(v *config.Volume) (int64, error) {
	if v.Create.Size == "" {
		return 0, nil
	}
	return v.SizeBytes()
}

// fitsRange refuses a volume whose size is outside rng.
func fitsRange(v *config.Volume, rng *csipb.CapacityRange) error {
	n, err := sizeBytes(v)
	if err != nil {
		return err
	}
	if lim := rng.GetLimitBytes(); lim > 0 && n > lim {
		return fmt.Errorf("volume %s would be %d bytes, over the limit of %d: %w", v.Ref(), n, lim, errOutOfRange)
	}
	return nil
}

// fitsExisting refuses an existing volume a repeated CreateVolume does not
// describe: the spec's AlreadyExists.
func fitsExisting(v *config.Volume, req *csipb.CreateVolumeRequest) error {
	n, err := sizeBytes(v)
	if err != nil {
		return err
	}
	rng := req.GetCapacityRange()
	if r := rng.GetRequiredBytes(); n < r {
		return fmt.Errorf("volume %s exists with %d bytes, less than the %d asked: %w", v.Ref(), n, r, config.ErrExists)
	}
	if l := rng.GetLimitBytes(); l > 0 && n > l {
		return fmt.Errorf("volume %s exists with %d bytes, more than the limit of %d: %w", v.Ref(), n, l, config.ErrExists)
	}
	if why := checkCapabilities(v, req.GetVolumeCapabilities()); why != "" {
		return fmt.Errorf("volume %s exists and does not fit: %s: %w", v.Ref(), why, config.ErrExists)
	}
	return nil
}

// DeleteVolume removes the volume through volmaster, which moves it to the
// trash and refuses while it is mounted on any host (FailedPrecondition,
// naming the host). An unknown or already removed volume is no error.
func (c controller) DeleteVolume(ctx context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	ref, err := volumeRef(req.GetVolumeId())
	if errors.Is(err, config.ErrNotFound) {
		return &csipb.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, statusError(err)
	}
	if _, err := c.s.cfg.API.RemoveVolume(ctx, ref, config.RemoveOptions{}); err != nil && !errors.Is(err, config.ErrNotFound) {
		return nil, statusError(fmt.Errorf("remove %s: %w", ref, err))
	}
	return &csipb.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms capabilities that fit the volume
// (checkCapabilities) and says why others do not.
func (c controller) ValidateVolumeCapabilities(ctx context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	ref, err := volumeRef(req.GetVolumeId())
	if err != nil {
		return nil, statusError(err)
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, statusError(missing("volume capabilities"))
	}
	if err := checkCapabilityFields(req.GetVolumeCapabilities()...); err != nil {
		return nil, statusError(err)
	}
	v, err := c.s.cfg.API.Volume(ctx, ref)
	if err != nil {
		return nil, statusError(err)
	}
	if why := checkCapabilities(&v, req.GetVolumeCapabilities()); why != "" {
		return &csipb.ValidateVolumeCapabilitiesResponse{Message: why}, nil
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

// ListVolumes pages through every volume sorted by ID. The token is the
// last ID of the previous page, so volumes created or removed between pages
// neither shift nor repeat the rest.
func (c controller) ListVolumes(ctx context.Context, req *csipb.ListVolumesRequest) (*csipb.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, statusError(fmt.Errorf("max_entries %d is negative: %w", req.GetMaxEntries(), config.ErrInvalid))
	}
	after := req.GetStartingToken()
	if after != "" {
		if _, err := config.ParseVolumeRef(after); err != nil {
			return nil, statusError(fmt.Errorf("starting token %q is not one ListVolumes gave: %w", after, errBadToken))
		}
	}
	vols, err := c.s.cfg.API.VolumesDetail(ctx, "")
	if err != nil {
		return nil, statusError(err)
	}
	byID := make(map[string]*config.Volume, len(vols))
	for i := range vols {
		byID[vols[i].Ref().String()] = &vols[i]
	}
	ids := slices.Sorted(maps.Keys(byID))
	start, _ := slices.BinarySearch(ids, after)
	if start < len(ids) && ids[start] == after {
		start++
	}
	resp := &csipb.ListVolumesResponse{}
	// Where a policy's volumes are usable, asked of volmaster once per
	// policy of the page, as CreateVolume answered it.
	acc := map[string]*csipb.Topology{}
	for _, id := range ids[start:] {
		if req.GetMaxEntries() > 0 && len(resp.Entries) == int(req.GetMaxEntries()) {
			resp.NextToken = resp.Entries[len(resp.Entries)-1].Volume.VolumeId
			break
		}
		v := byID[id]
		n, _ := sizeBytes(v)
		e := &csipb.Volume{VolumeId: id, CapacityBytes: n, VolumeContext: map[string]string{ParamPolicy: v.Policy, "name": v.Name}}
		key := v.Policy + "\x00" + v.Backends.Mount
		t, ok := acc[key]
		if !ok {
			if t, err = c.accessibleFrom(ctx, v.Policy, v.Backends); err != nil {
				return nil, statusError(err)
			}
			acc[key] = t
		}
		if t != nil {
			e.AccessibleTopology = []*csipb.Topology{t}
		}
		resp.Entries = append(resp.Entries, &csipb.ListVolumesResponse_Entry{Volume: e})
	}
	return resp, nil
}

// ControllerExpandVolume grows the volume through volmaster's resize (also
// while it is mounted); the node then grows the filesystem
// (NodeExpandVolume). A volume already as large is no error.
func (c controller) ControllerExpandVolume(ctx context.Context, req *csipb.ControllerExpandVolumeRequest) (*csipb.ControllerExpandVolumeResponse, error) {
	ref, err := volumeRef(req.GetVolumeId())
	if err != nil {
		return nil, statusError(err)
	}
	want, lim := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if want <= 0 {
		return nil, statusError(missing("capacity range required bytes"))
	}
	if lim > 0 && want > lim {
		return nil, statusError(fmt.Errorf("capacity range %d..%d is not a range: %w", want, lim, config.ErrInvalid))
	}
	v, err := c.s.cfg.API.Volume(ctx, ref)
	if err != nil {
		return nil, statusError(err)
	}
	n, err := sizeBytes(&v)
	if err != nil {
		return nil, statusError(err)
	}
	if n < want {
		if v, err = c.s.cfg.API.ResizeVolume(ctx, ref, strconv.FormatInt(want, 10)); err != nil {
			return nil, statusError(fmt.Errorf("resize %s: %w", ref, err))
		}
		if n, err = sizeBytes(&v); err != nil {
			return nil, statusError(err)
		}
	}
	return &csipb.ControllerExpandVolumeResponse{CapacityBytes: n, NodeExpansionRequired: true}, nil
}
