package csi

import (
	"context"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// identity serves the CSI Identity service.
type identity struct {
	csipb.UnimplementedIdentityServer
	s *Server
}

func (i identity) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	return &csipb.GetPluginInfoResponse{Name: i.s.cfg.DriverName, VendorVersion: i.s.cfg.Version}, nil
}

func (i identity) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	var caps []*csipb.PluginCapability
	// Local-backend volumes are usable only where volmaster's data dir is
	// (topology.go); the controller says so and nodes report it.
	caps = append(caps, &csipb.PluginCapability{Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{
		Type: csipb.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS}}})
	if i.s.cfg.Controller {
		caps = append(caps,
			&csipb.PluginCapability{Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{
				Type: csipb.PluginCapability_Service_CONTROLLER_SERVICE}}},
			// A mounted volume grows online: volmaster resizes the image,
			// the node grows the filesystem (NodeExpandVolume).
			&csipb.PluginCapability{Type: &csipb.PluginCapability_VolumeExpansion_{VolumeExpansion: &csipb.PluginCapability_VolumeExpansion{
				Type: csipb.PluginCapability_VolumeExpansion_ONLINE}}})
	}
	return &csipb.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe is ready when volmaster answers (the controller's every call and
// the node's new mounts need it).
func (i identity) Probe(ctx context.Context, _ *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	if err := i.s.volmaster().Health(ctx); err != nil {
		return nil, statusError(err)
	}
	return &csipb.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
