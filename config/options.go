package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Volume options accepted at creation (docker volume create -o key=value,
// volcli volume create --opt key=value). Each overrides the policy's value
// for the new volume only.
const (
	OptSize              = "size"
	OptFilesystem        = "filesystem"
	OptSnapshots         = "snapshots"
	OptSnapshotFrequency = "snapshot.frequency"
	OptSnapshotKeep      = "snapshot.keep"
	OptReadBPS           = "rate-limit.read-bps"
	OptWriteBPS          = "rate-limit.write-bps"
	OptReadIOPS          = "rate-limit.read-iops"
	OptWriteIOPS         = "rate-limit.write-iops"
	OptEphemeral         = "ephemeral"
	OptProtect           = "protect"
	OptUnlocked          = "unlocked"
	// OptSource is an nfs volume's own export, server:/path, kept in its
	// driver options under DriverSource (instead of the policy's).
	OptSource = "source"
)

// DriverSource is the driver option (Driver.Options) naming an nfs
// volume's export, server:/path.
const DriverSource = "source"

// VolumeOptions lists every option key accepted at creation.
func VolumeOptions() []string {
	return []string{OptSize, OptFilesystem, OptSnapshots, OptSnapshotFrequency, OptSnapshotKeep,
		OptReadBPS, OptWriteBPS, OptReadIOPS, OptWriteIOPS, OptEphemeral, OptProtect, OptUnlocked, OptSource}
}

// OptionAliases maps the original volplugin's spellings of volume options
// (its documented docker volume create --opt keys) to ours, so that its
// compose files and scripts keep working. Its size, filesystem, snapshots
// and unlocked are spelled as ours. Both spellings of one option at once
// are refused.
func OptionAliases() map[string]string {
	return map[string]string{
		"snapshots.frequency":   OptSnapshotFrequency,
		"snapshots.keep":        OptSnapshotKeep,
		"rate-limit.read.bps":   OptReadBPS,
		"rate-limit.write.bps":  OptWriteBPS,
		"rate-limit.read.iops":  OptReadIOPS,
		"rate-limit.write.iops": OptWriteIOPS,
		"mount":                 OptSource,
	}
}

// canonicalOptions returns opts under our spellings, refusing an option
// given twice (once under each spelling).
func canonicalOptions(opts map[string]string) (map[string]string, map[string]string, error) {
	aliases := OptionAliases()
	out := make(map[string]string, len(opts))
	given := make(map[string]string, len(opts)) // our spelling -> the key used
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		c := k
		if a, ok := aliases[k]; ok {
			c = a
		}
		if prev, ok := given[c]; ok {
			return nil, nil, fmt.Errorf("options %s and %s both set %s: %w", prev, k, c, ErrInvalid)
		}
		out[c], given[c] = opts[k], k
	}
	return out, given, nil
}

func (v *Volume) applyOptions(opts map[string]string) error {
	opts, given, err := canonicalOptions(opts)
	if err != nil {
		return err
	}
	// Sorted so that the first bad option reported is the same every time.
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		val := opts[k]
		var err error
		switch k {
		case OptSize:
			if v.Backends.CRUD == "" {
				return fmt.Errorf("option size: backend %s has no size: %w", v.Backends.Mount, ErrInvalid)
			}
			if _, err = ParseSize(val); err == nil {
				v.Create.Size = val
			}
		case OptFilesystem:
			if _, ok := v.FileSystems[val]; !ok {
				err = fmt.Errorf("filesystem %q is not defined by the policy: %w", val, ErrInvalid)
			}
			v.Create.Filesystem = val
		case OptSnapshots:
			v.Runtime.Snapshots, err = parseBool(val)
		case OptSnapshotFrequency:
			v.Runtime.Snapshot.Frequency, err = ParseDuration(val)
		case OptSnapshotKeep:
			var n uint64
			n, err = parseUint(val)
			v.Runtime.Snapshot.Keep = uint(n)
		case OptReadBPS, OptWriteBPS:
			var n int64
			// 0 means unlimited, as in the runtime JSON.
			if val != "0" {
				n, err = ParseSize(val)
			}
			if err == nil {
				if k == OptReadBPS {
					v.Runtime.RateLimit.ReadBPS = ByteRate(n)
				} else {
					v.Runtime.RateLimit.WriteBPS = ByteRate(n)
				}
			}
		case OptReadIOPS:
			v.Runtime.RateLimit.ReadIOPS, err = parseUint(val)
		case OptWriteIOPS:
			v.Runtime.RateLimit.WriteIOPS, err = parseUint(val)
		case OptEphemeral:
			v.Ephemeral, err = parseBool(val)
		case OptProtect:
			v.Protect, err = parseBool(val)
		case OptUnlocked:
			// Where unlocked is allowed (nfs only) is checked with the
			// volume as a whole.
			v.Unlocked, err = parseBool(val)
		case OptSource:
			err = v.setSource(val)
		default:
			return fmt.Errorf("unknown option %q (known: %s; and the original volplugin's %s): %w", k,
				strings.Join(VolumeOptions(), ", "), strings.Join(slices.Sorted(maps.Keys(OptionAliases())), ", "), ErrInvalid)
		}
		if err != nil {
			return fmt.Errorf("option %s: %w", given[k], err)
		}
	}
	return nil
}

// setSource makes s the export of an nfs volume.
func (v *Volume) setSource(s string) error {
	if v.Backends.Mount != BackendNFS {
		return fmt.Errorf("only an nfs volume names its own export, not a %s one: %w", v.Backends.Mount, ErrInvalid)
	}
	if err := CheckNFSSource(s); err != nil {
		return err
	}
	if v.Driver.Options == nil {
		v.Driver.Options = map[string]string{}
	}
	v.Driver.Options[DriverSource] = s
	return nil
}

// CheckNFSSource checks an NFS export, server:/path: a server, an absolute
// path, no whitespace, and no leading '-' (which mount(8) would read as an
// option).
func CheckNFSSource(s string) error {
	host, export, ok := strings.Cut(s, ":")
	if !ok || host == "" || strings.HasPrefix(host, "-") || !strings.HasPrefix(export, "/") ||
		strings.ContainsAny(s, " \t\n\x00") {
		return fmt.Errorf("NFS export %q is not server:/path: %w", s, ErrInvalid)
	}
	return nil
}
