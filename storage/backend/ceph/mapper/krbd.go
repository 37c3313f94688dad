package mapper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// krbd maps through the kernel RBD client. The mapping is found in
// /sys/bus/rbd/devices/<id>/{pool,pool_ns,name,current_snap}, never by
// parsing the rbd tool's output, so that a mapping made before a restart is
// found the same way.
type krbd struct{ env Env }

func (*krbd) Name() string { return KRBD }

// krbdOptions: noshare gives each mapping its own Ceph client, so that
// fencing one image (blocklisting its client) does not fence every other
// image mapped on the same host.
const krbdOptions = "noshare"

func (k *krbd) Map(ctx context.Context, img Image) (string, error) {
	if err := img.validate(); err != nil {
		return "", err
	}
	if dev, err := k.Device(ctx, img); err != nil || dev != "" {
		return dev, err
	}
	argv := append([]string{"rbd", "device", "map"}, img.cephArgs()...)
	argv = append(argv, "--options", krbdOptions, img.Spec())
	if _, err := k.env.run(ctx, argv...); err != nil {
		return "", fmt.Errorf("krbd map %s: %w", img.Spec(), err)
	}
	dev, err := k.Device(ctx, img)
	if err == nil && dev == "" {
		err = fmt.Errorf("krbd map %s: rbd succeeded but no device in %s", img.Spec(), k.devicesDir())
	}
	return dev, err
}

func (k *krbd) Unmap(ctx context.Context, img Image) error {
	devs, err := k.devices(img)
	if err != nil {
		return err
	}
	for _, dev := range devs {
		if _, err := k.env.run(ctx, "rbd", "device", "unmap", dev); err != nil {
			return fmt.Errorf("krbd unmap %s (%s): %w", img.Spec(), dev, err)
		}
	}
	return nil
}

func (k *krbd) Device(_ context.Context, img Image) (string, error) {
	devs, err := k.devices(img)
	if err != nil || len(devs) == 0 {
		return "", err
	}
	return devs[0], nil
}

func (k *krbd) Refresh(ctx context.Context, _ Image, dev string, size int64) error {
	return k.env.waitBlockSize(ctx, dev, size)
}

func (k *krbd) devicesDir() string { return filepath.Join(k.env.SysRoot, "bus", "rbd", "devices") }

// devices lists the /dev/rbdN devices mapping img's head (not a snapshot) in
// the default namespace.
func (k *krbd) devices(img Image) ([]string, error) {
	entries, err := os.ReadDir(k.devicesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list krbd devices: %w", err)
	}
	var devs []string
	for _, e := range entries {
		dir := filepath.Join(k.devicesDir(), e.Name())
		attrs := map[string]string{"pool": "", "name": "", "current_snap": "", "pool_ns": ""}
		for a := range attrs {
			v, err := readTrim(filepath.Join(dir, a))
			if err != nil && !(a == "pool_ns" && errors.Is(err, fs.ErrNotExist)) {
				// Unmapped while we looked: not ours any more.
				attrs = nil
				break
			}
			attrs[a] = v
		}
		if attrs == nil || attrs["pool"] != img.Pool || attrs["name"] != img.Name ||
			attrs["current_snap"] != "-" || attrs["pool_ns"] != "" {
			continue
		}
		devs = append(devs, filepath.Join(k.env.DevRoot, "rbd"+e.Name()))
	}
	return devs, nil
}
