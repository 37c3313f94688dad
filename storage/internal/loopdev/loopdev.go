// Package loopdev attaches, finds and detaches loop devices with the kernel's
// loop ioctls, as losetup does, without a process per call: on the mount
// path of the local backend those processes cost more than the mount.
//
// Only for backing files on local filesystems: a file on FUSE or a network
// filesystem can block an open or ioctl indefinitely, and callers there run
// losetup under a timeout instead. Needs Linux 5.8 or newer (LOOP_CONFIGURE).
package loopdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysBlock and devDir are where loop devices are listed and opened.
const (
	sysBlock    = "/sys/block"
	devDir      = "/dev"
	loopControl = "/dev/loop-control"
)

// attachTries bounds the race with other attachers for the free device
// LOOP_CTL_GET_FREE named (EBUSY: someone configured it first).
const attachTries = 16

// Attach attaches path to a free loop device (read-write, no partition
// scan, buffered I/O: losetup --find's defaults) and returns the device.
func Attach(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("attach loop device: %w", err)
	}
	defer f.Close()
	ctl, err := os.OpenFile(loopControl, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("attach loop device: %w", err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], path)
	for range attachTries {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("attach loop device: find a free device: %w", err)
		}
		dev := filepath.Join(devDir, "loop"+strconv.Itoa(n))
		err = configure(dev, &cfg)
		if errors.Is(err, unix.EBUSY) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("attach loop device %s: %w", dev, err)
		}
		return dev, nil
	}
	return "", fmt.Errorf("attach loop device: every free device was taken first, %d times: %w", attachTries, unix.EBUSY)
}

func configure(dev string, cfg *unix.LoopConfig) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.IoctlLoopConfigure(fd, cfg)
}

// Find returns the loop devices backed by path, matched as losetup
// --associated matches them: by the backing file's device and inode, so a
// symlinked or renamed path still matches. A device whose backing file was
// deleted is left out: its inode number may since belong to path.
func Find(path string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("find loop devices of %s: %w", path, err)
	}
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("find loop devices: %w", err)
	}
	var devs []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		bf, err := os.ReadFile(filepath.Join(sysBlock, name, "loop", "backing_file"))
		if err != nil || strings.HasSuffix(strings.TrimSpace(string(bf)), "(deleted)") {
			continue // not attached, or to a deleted file
		}
		dev := filepath.Join(devDir, name)
		info, err := status(dev)
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("find loop devices: %s: %w", dev, err)
		}
		if err != nil {
			// Being detached or torn down meanwhile (ENXIO, ECONNABORTED,
			// ...): as losetup --associated, a device that cannot be asked
			// is not listed. Ours is not among them: the caller holds the
			// volume, so nothing detaches its device now.
			continue
		}
		if info.Device == st.Dev && info.Inode == st.Ino {
			devs = append(devs, dev)
		}
	}
	return devs, nil
}

func status(dev string) (*unix.LoopInfo64, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return unix.IoctlLoopGetStatus64(fd)
}

// Detach detaches dev. While something else has it open the kernel only
// marks it to clear on last close (its autoclear flag). A device that is
// not attached is not an error.
func Detach(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("detach loop device %s: %w", dev, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach loop device %s: %w", dev, err)
	}
	return nil
}
