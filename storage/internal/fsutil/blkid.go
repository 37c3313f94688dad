package fsutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage"
)

// Content is what blkid found on a device or image file; backends decide
// from it whether to format, and refuse a device holding something else.
type Content struct {
	Blank  bool
	FSType string // TYPE, e.g. ext4; empty if not a filesystem
	PTType string // PTTYPE, set for a partition table
}

func (c Content) String() string {
	switch {
	case c.Blank:
		return "nothing"
	case c.FSType != "":
		return c.FSType
	case c.PTType != "":
		return "a " + c.PTType + " partition table"
	default:
		return "unrecognised content"
	}
}

// blkidNothingFound is blkid's exit status when it recognises nothing.
const blkidNothingFound = 2

// Probe runs blkid on dev, reading the device itself (--probe bypasses
// blkid's cache, which can be stale for a reused loop or rbd device).
func Probe(ctx context.Context, timeout time.Duration, dev string) (Content, error) {
	out, err := sysexec.Run(ctx, timeout, "blkid", "--probe", "--output", "export", dev)
	if sysexec.ExitCode(err) == blkidNothingFound {
		return Content{Blank: true}, nil
	}
	if err != nil {
		return Content{}, fmt.Errorf("probe %s: %w", dev, err)
	}
	var c Content
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, val, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "TYPE":
			c.FSType = val
		case "PTTYPE":
			c.PTType = val
		}
	}
	return c, nil
}

// holdsNoData reports whether the regular file at path has no data extent
// (SEEK_DATA from 0 finds none): a new sparse image. A filesystem that does
// not tell holes from data answers 0, that is "has data", and errors are
// "has data" too, so that the full probe runs.
func holdsNoData(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	return errors.Is(err, unix.ENXIO)
}

// FormatIfBlank formats dev with v.Mkfs if (and only if) it is blank and v
// was never formatted, and returns the filesystem type on it. A device
// holding anything other than v.Filesystem is storage.ErrWrongFilesystem: it
// is never reformatted, so that a misconfigured policy cannot destroy data.
// A formatted volume on which blkid finds nothing is storage.ErrDamaged, and
// a device blkid calls blank that is not provably blank (checkBlank) is
// storage.ErrNotBlank; both errors name the repair command, run on r (dev if
// r.Path is empty). Nothing is written to dev unless it is formatted.
func FormatIfBlank(ctx context.Context, timeout time.Duration, v storage.Volume, dev string, r Repair) (string, error) {
	r = r.on(dev)
	// An image file without a single data extent reads as zeros from end to
	// end: blank beyond doubt, with no blkid or block scan to run.
	proven := r.Zeroed || (r.File && holdsNoData(r.Path))
	c := Content{Blank: true}
	if !proven {
		var err error
		if c, err = Probe(ctx, timeout, dev); err != nil {
			return "", err
		}
	}
	switch {
	case c.Blank && v.Formatted:
		return "", damaged(ctx, timeout, v, dev, r)
	case c.Blank:
		if len(v.Mkfs) == 0 {
			return "", fmt.Errorf("%s is blank and no mkfs command is set: %w", dev, config.ErrInvalid)
		}
		if !proven {
			if err := checkBlank(ctx, timeout, v, dev, r); err != nil {
				return "", err
			}
		}
		if _, err := sysexec.Run(ctx, timeout, config.FSCommand(v.Mkfs).Argv(dev)...); err != nil {
			return "", fmt.Errorf("format %s: %w", dev, err)
		}
		return v.Filesystem, nil
	case c.FSType == "" || (v.Filesystem != "" && c.FSType != v.Filesystem):
		return "", fmt.Errorf("%s holds %s, not %s: %w", dev, c, v.Filesystem, storage.ErrWrongFilesystem)
	}
	return c.FSType, nil
}
