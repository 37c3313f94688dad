package volplugin

import (
	"context"
	"fmt"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/volplugin/volplugin/config"
)

// MountVolume mounts ref on this host for one holder, exactly as a Docker
// Mount with mount ID id (volcsi's node service stages through it): under
// the host lease and the volume's mount lock, reference counted by id, the
// same id twice counting once. It returns where the volume is mounted. The
// driver bounds the work by its own timeout; ctx only stops it early when
// it is already done.
func (d *Driver) MountVolume(ctx context.Context, ref config.VolumeRef, id string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	resp, err := d.Mount(&volume.MountRequest{Name: ref.String(), ID: id})
	if err != nil {
		return "", err
	}
	return resp.Mountpoint, nil
}

// UnmountVolume drops holder id of ref, as a Docker Unmount: the last holder
// unmounts, unmaps and releases the lock; an id this host does not hold
// changes nothing.
func (d *Driver) UnmountVolume(ctx context.Context, ref config.VolumeRef, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.Unmount(&volume.UnmountRequest{Name: ref.String(), ID: id})
}

// GrowVolume grows the filesystem of ref, mounted here, to the volume's
// recorded size (after volmaster resized it), as the runtime watch does
// when it sees the resize. A volume not mounted here is an error
// (config.ErrNotFound).
func (d *Driver) GrowVolume(ctx context.Context, ref config.VolumeRef) error {
	if d.mountpoint(ref) == "" {
		return fmt.Errorf("volume %s is not mounted on host %s: %w", ref, d.cfg.Host, config.ErrNotFound)
	}
	v, err := d.cfg.API.Volume(ctx, ref)
	if err != nil {
		return err
	}
	_, err = d.growMounted(ctx, ref, v.Create.Size)
	return err
}

// HostLabel is this host's name in locks and leases.
func (d *Driver) HostLabel() string { return d.cfg.Host }
