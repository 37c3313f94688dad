package iolimit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// v1 throttle files, in Limits field order.
var v1Files = [4]string{
	"blkio.throttle.read_bps_device",
	"blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device",
	"blkio.throttle.write_iops_device",
}

// Apply writes l for device d to cgroup cg. Files already holding the wanted
// value are not rewritten (a write restarts the kernel's throttle slice).
func Apply(cg Cgroup, d Device, l Limits) error {
	if cg.V2 {
		return applyV2(cg.Dir, d, l)
	}
	vals := [4]uint64{l.ReadBPS, l.WriteBPS, l.ReadIOPS, l.WriteIOPS}
	var errs []error
	for i, name := range v1Files {
		file := filepath.Join(cg.Dir, name)
		cur, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("iolimit: read %s: %w", file, err))
			continue
		}
		if v1Value(cur, d) == vals[i] {
			continue
		}
		if err := writeFile(file, fmt.Sprintf("%s %d", d, vals[i])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// v1Value returns the value for d in a blkio.throttle.*_device file; 0 if absent.
func v1Value(content []byte, d Device) uint64 {
	prefix := d.String() + " "
	for _, line := range strings.Split(string(content), "\n") {
		if r, ok := strings.CutPrefix(line, prefix); ok {
			v, _ := strconv.ParseUint(strings.TrimSpace(r), 10, 64)
			return v
		}
	}
	return 0
}

// IOMaxLine returns the io.max line for d and l ("max" for 0).
func IOMaxLine(d Device, l Limits) string {
	f := func(v uint64) string {
		if v == 0 {
			return "max"
		}
		return strconv.FormatUint(v, 10)
	}
	return fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s",
		d, f(l.ReadBPS), f(l.WriteBPS), f(l.ReadIOPS), f(l.WriteIOPS))
}

func applyV2(dir string, d Device, l Limits) error {
	file := filepath.Join(dir, "io.max")
	cur, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("iolimit: read %s: %w", file, err)
	}
	line := IOMaxLine(d, l)
	prefix := d.String() + " "
	found := false
	for _, c := range strings.Split(string(cur), "\n") {
		if strings.HasPrefix(c, prefix) {
			found = true
			if strings.Join(strings.Fields(c), " ") == line {
				return nil
			}
		}
	}
	if !found && l.IsZero() {
		return nil // no entry means unlimited
	}
	return writeFile(file, line)
}

// writeFile writes s to an existing (cgroup) file without creating it.
func writeFile(file, s string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("iolimit: write %q to %s: %w", s, file, err)
	}
	return nil
}
