package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
)

// Host mounts volumes on this node: volplugin's Driver (volplugin.Start),
// the code path Docker's mounts take, under the host lease and the
// volume's mount lock.
type Host interface {
	// MountVolume mounts ref for holder id (counted once however often it
	// is asked) and returns where it is mounted.
	MountVolume(ctx context.Context, ref config.VolumeRef, id string) (string, error)
	// UnmountVolume drops holder id; the last holder unmounts and releases
	// the lock. An id not held is no error.
	UnmountVolume(ctx context.Context, ref config.VolumeRef, id string) error
	// GrowVolume grows the filesystem of ref, mounted here, to its size.
	GrowVolume(ctx context.Context, ref config.VolumeRef) error
	// HostLabel is the host's name in locks: the CSI node ID.
	HostLabel() string
}

// node serves the CSI Node service.
type node struct {
	csipb.UnimplementedNodeServer
	s *Server
}

var nodeCapabilities = []csipb.NodeServiceCapability_RPC_Type{
	csipb.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
	csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csipb.NodeServiceCapability_RPC_EXPAND_VOLUME,
}

func (n node) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	var caps []*csipb.NodeServiceCapability
	for _, t := range nodeCapabilities {
		caps = append(caps, &csipb.NodeServiceCapability{Type: &csipb.NodeServiceCapability_Rpc{
			Rpc: &csipb.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo: the node ID is the host label the node's locks carry; the
// topology is the host label and, where the node sees volmaster's local
// data dir, its identity (nodeTopology).
func (n node) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	topo, err := n.s.nodeTopology()
	if err != nil {
		return nil, statusError(err)
	}
	return &csipb.NodeGetInfoResponse{NodeId: n.s.cfg.Node.HostLabel(), AccessibleTopology: topo}, nil
}

// stageID is the holder ID a staging path mounts a volume under, beside
// Docker's mount IDs: stable, so a repeated or retried NodeStageVolume
// (after a crash of volcsi, say) counts once.
func stageID(stagingPath string) string {
	sum := sha256.Sum256([]byte(stagingPath))
	return "csi-stage-" + hex.EncodeToString(sum[:8])
}

// NodeStageVolume mounts the volume through the host (lock, map,
// format-once, mount) and binds its mount onto the staging path. Staging
// again is a no-op.
func (n node) NodeStageVolume(ctx context.Context, req *csipb.NodeStageVolumeRequest) (*csipb.NodeStageVolumeResponse, error) {
	staging := req.GetStagingTargetPath()
	ref, done, err := n.open(req.GetVolumeId(), staging, "staging target path", req.GetVolumeCapability())
	if err != nil {
		return nil, statusError(err)
	}
	defer done()
	if mounted, err := mountinfo.Mounted(staging); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, statusError(err)
	} else if mounted {
		return &csipb.NodeStageVolumeResponse{}, nil
	}
	v, err := n.s.cfg.API.Volume(ctx, ref)
	if err != nil {
		return nil, statusError(err)
	}
	if why := checkCapabilities(&v, []*csipb.VolumeCapability{req.GetVolumeCapability()}); why != "" {
		return nil, statusError(fmt.Errorf("%s: %w", why, config.ErrInvalid))
	}
	id := stageID(staging)
	path, err := n.s.cfg.Node.MountVolume(ctx, ref, id)
	if err != nil {
		return nil, statusError(fmt.Errorf("stage %s: %w", ref, err))
	}
	if err := os.MkdirAll(staging, 0o750); err == nil {
		err = unix.Mount(path, staging, "", unix.MS_BIND, "")
	}
	if err != nil {
		// Nothing staged: the mount and its lock must not stay behind.
		if uerr := n.s.cfg.Node.UnmountVolume(context.WithoutCancel(ctx), ref, id); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, statusError(fmt.Errorf("bind %s onto %s: %w", ref, staging, err))
	}
	return &csipb.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume unbinds the staging path and drops its hold on the
// volume (the last holder unmounts it and releases the lock). Unstaging
// what is not staged is a no-op.
func (n node) NodeUnstageVolume(ctx context.Context, req *csipb.NodeUnstageVolumeRequest) (*csipb.NodeUnstageVolumeResponse, error) {
	staging := req.GetStagingTargetPath()
	ref, done, err := n.open(req.GetVolumeId(), staging, "staging target path")
	if err != nil {
		return nil, statusError(err)
	}
	defer done()
	if err := unmountAll(staging); err != nil {
		return nil, statusError(err)
	}
	if err := n.s.cfg.Node.UnmountVolume(ctx, ref, stageID(staging)); err != nil {
		return nil, statusError(fmt.Errorf("unstage %s: %w", ref, err))
	}
	return &csipb.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume binds the staging path onto the target path, read-only
// when asked (readonly, or a reader-only access mode). Publishing again is
// a no-op.
func (n node) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	target, staging := req.GetTargetPath(), req.GetStagingTargetPath()
	if req.GetVolumeId() != "" && target != "" && staging == "" {
		return nil, statusError(missing("staging target path"))
	}
	ref, done, err := n.open(req.GetVolumeId(), target, "target path", req.GetVolumeCapability())
	if err != nil {
		return nil, statusError(err)
	}
	defer done()
	mode := req.GetVolumeCapability().GetAccessMode().GetMode()
	readOnly := req.GetReadonly() || mode == csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		mode == csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
	if infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target)); err == nil && len(infos) > 0 {
		// Published already: the same request again is a no-op, another
		// (read-only against read-write) is the spec's AlreadyExists.
		if isRO := slices.Contains(strings.Split(infos[len(infos)-1].Options, ","), "ro"); isRO != readOnly {
			return nil, statusError(fmt.Errorf("volume %s is published at %s with read-only %v, not %v: %w", ref, target, isRO, readOnly, config.ErrExists))
		}
		return &csipb.NodePublishVolumeResponse{}, nil
	}
	if mounted, err := mountinfo.Mounted(staging); err != nil || !mounted {
		return nil, statusError(fmt.Errorf("volume %s is not staged at %s: %w", ref, staging, errNotStaged))
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, statusError(err)
	}
	if err := unix.Mount(staging, target, "", unix.MS_BIND, ""); err != nil {
		return nil, statusError(fmt.Errorf("bind %s onto %s: %w", staging, target, err))
	}
	if readOnly {
		// A bind mount takes its own read-only flag only on a remount.
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return nil, statusError(fmt.Errorf("make %s read-only: %w", target, err))
		}
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unbinds the target path and removes it (the spec has
// the plugin remove what it created). Unpublishing again is a no-op.
func (n node) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if err := required(req.GetVolumeId(), target, "target path"); err != nil {
		return nil, statusError(err)
	}
	// An ID that is none of ours has nothing to serialise on; its target
	// is still cleaned up.
	if ref, err := volumeRef(req.GetVolumeId()); err == nil {
		done, err := n.s.begin(ref)
		if err != nil {
			return nil, statusError(err)
		}
		defer done()
	}
	if err := unmountAll(target); err != nil {
		return nil, statusError(err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, statusError(fmt.Errorf("remove target path: %w", err))
	}
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

// unmountAll unmounts path until nothing is mounted there.
func unmountAll(path string) error {
	for {
		mounted, err := mountinfo.Mounted(path)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !mounted) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := unix.Unmount(path, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
}

// NodeGetVolumeStats reports bytes and inodes of the filesystem at the
// volume path (statfs).
func (n node) NodeGetVolumeStats(ctx context.Context, req *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	path := req.GetVolumePath()
	if err := required(req.GetVolumeId(), path, "volume path"); err != nil {
		return nil, statusError(err)
	}
	if _, err := volumeRef(req.GetVolumeId()); err != nil {
		return nil, statusError(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("volume path %s: %w", path, config.ErrNotFound)
		}
		return nil, statusError(err)
	}
	bs := st.Bsize
	return &csipb.NodeGetVolumeStatsResponse{Usage: []*csipb.VolumeUsage{
		{Unit: csipb.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
		{Unit: csipb.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
	}}, nil
}

// NodeExpandVolume grows the filesystem of a volume staged here to the size
// volmaster records (ControllerExpandVolume resized the image).
func (n node) NodeExpandVolume(ctx context.Context, req *csipb.NodeExpandVolumeRequest) (*csipb.NodeExpandVolumeResponse, error) {
	path := req.GetVolumePath()
	if err := required(req.GetVolumeId(), path, "volume path"); err != nil {
		return nil, statusError(err)
	}
	ref, err := volumeRef(req.GetVolumeId())
	if err != nil {
		return nil, statusError(err)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("volume path %s: %w", path, config.ErrNotFound)
		}
		return nil, statusError(err)
	}
	if err := n.s.cfg.Node.GrowVolume(ctx, ref); err != nil {
		return nil, statusError(fmt.Errorf("expand %s: %w", ref, err))
	}
	return &csipb.NodeExpandVolumeResponse{}, nil
}

// open is the opening the node calls on one volume and path share: the
// volume ID and the path (named what for the error) are required, the
// capability, when the call carries one, must be complete, and the volume
// must not be in another call on this node; done ends the call.
func (n node) open(id, path, what string, capability ...*csipb.VolumeCapability) (ref config.VolumeRef, done func(), err error) {
	if err := required(id, path, what); err != nil {
		return config.VolumeRef{}, nil, err
	}
	if len(capability) > 0 {
		if err := checkCapabilityFields(capability...); err != nil {
			return config.VolumeRef{}, nil, err
		}
	}
	if ref, err = volumeRef(id); err != nil {
		return config.VolumeRef{}, nil, err
	}
	if done, err = n.s.begin(ref); err != nil {
		return config.VolumeRef{}, nil, err
	}
	return ref, done, nil
}
