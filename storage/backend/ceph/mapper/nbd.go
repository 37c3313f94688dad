package mapper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// nbd maps through rbd-nbd. The mapping is found the way `rbd-nbd
// list-mapped` finds it: /sys/block/nbdN/pid names the rbd-nbd process, whose
// command line names the image.
type nbd struct{ env Env }

func (*nbd) Name() string { return NBD }

func (n *nbd) Map(ctx context.Context, img Image) (string, error) {
	if err := img.validate(); err != nil {
		return "", err
	}
	if dev, err := n.Device(ctx, img); err != nil || dev != "" {
		return dev, err
	}
	argv := append([]string{"rbd-nbd", "map"}, img.cephArgs()...)
	if _, err := n.env.run(ctx, append(argv, img.Spec())...); err != nil {
		return "", fmt.Errorf("nbd map %s: %w", img.Spec(), err)
	}
	dev, err := n.Device(ctx, img)
	if err == nil && dev == "" {
		err = fmt.Errorf("nbd map %s: rbd-nbd succeeded but no nbd device names it", img.Spec())
	}
	return dev, err
}

func (n *nbd) Unmap(ctx context.Context, img Image) error {
	devs, err := n.devices(img)
	if err != nil {
		return err
	}
	for _, dev := range devs {
		if _, err := n.env.run(ctx, "rbd-nbd", "unmap", dev); err != nil {
			return fmt.Errorf("nbd unmap %s (%s): %w", img.Spec(), dev, err)
		}
	}
	return nil
}

func (n *nbd) Device(_ context.Context, img Image) (string, error) {
	devs, err := n.devices(img)
	if err != nil || len(devs) == 0 {
		return "", err
	}
	return devs[0], nil
}

func (n *nbd) Refresh(ctx context.Context, _ Image, dev string, size int64) error {
	return n.env.waitBlockSize(ctx, dev, size)
}

// devices lists the /dev/nbdN devices served by an rbd-nbd for img.
func (n *nbd) devices(img Image) ([]string, error) {
	pids, err := filepath.Glob(filepath.Join(n.env.SysRoot, "block", "nbd*", "pid"))
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, pidFile := range pids {
		pid, err := readTrim(pidFile)
		if errors.Is(err, fs.ErrNotExist) {
			continue // device disconnected meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list nbd devices: %w", err)
		}
		raw, err := os.ReadFile(filepath.Join(n.env.ProcRoot, pid, "cmdline"))
		if err != nil {
			continue // the server is gone; the device is being torn down
		}
		if servesImage(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), img) {
			devs = append(devs, filepath.Join(n.env.DevRoot, filepath.Base(filepath.Dir(pidFile))))
		}
	}
	return devs, nil
}

// servesImage reports whether argv is an rbd-nbd map command for img.
func servesImage(argv []string, img Image) bool {
	if len(argv) < 3 || filepath.Base(argv[0]) != "rbd-nbd" {
		return false
	}
	i := slices.Index(argv, "map")
	return i > 0 && slices.Contains(argv[i+1:], img.Spec())
}
