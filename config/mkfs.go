package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A filesystem command runs as root on every host that mounts the volume,
// so a policy may name only a closed set of mkfs programs, each with the
// options it knows, and the device exactly once: anything else is refused at
// upload (and again before a host runs it) naming the offending word.

// mkfsRule is what one program may be given: flags without a value, and
// options with one (as the next word, or joined: -m0), each value matching
// its pattern.
type mkfsRule struct {
	flags  []string
	values map[string]*regexp.Regexp
	// device is false for a program that takes no device (false(1), the
	// command of a filesystem that must never be made).
	device bool
}

var (
	reNum    = regexp.MustCompile(`^[0-9]{1,10}$`)
	reLabel  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,16}$`)
	reOpts   = regexp.MustCompile(`^[a-z0-9_^]+(=[a-z0-9_]+)?(,[a-z0-9_^]+(=[a-z0-9_]+)?)*$`)
	reWord   = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
	reUUID   = regexp.MustCompile(`^([0-9a-fA-F-]{36}|clear|random|time)$`)
	reErrors = regexp.MustCompile(`^(continue|remount-ro|panic)$`)
)

func extRule() mkfsRule {
	return mkfsRule{device: true, flags: []string{"-F", "-q", "-j", "-n", "-S", "-v"},
		values: map[string]*regexp.Regexp{"-m": reNum, "-b": reNum, "-i": reNum, "-I": reNum, "-N": reNum, "-g": reNum,
			"-G": reNum, "-L": reLabel, "-O": reOpts, "-E": reOpts, "-T": reWord, "-t": reWord, "-U": reUUID, "-e": reErrors}}
}

// mkfsRules is the closed set, by program name.
var mkfsRules = map[string]mkfsRule{
	"mkfs.ext2": extRule(), "mkfs.ext3": extRule(), "mkfs.ext4": extRule(),
	"mkfs.xfs": {device: true, flags: []string{"-f", "-q", "-K"},
		values: map[string]*regexp.Regexp{"-L": reLabel, "-b": reOpts, "-m": reOpts, "-i": reOpts, "-n": reOpts,
			"-d": reOpts, "-l": reOpts, "-s": reOpts, "-r": reOpts}},
	"mkfs.btrfs": {device: true, flags: []string{"-f", "-q", "-K"},
		values: map[string]*regexp.Regexp{"-L": reLabel, "-m": reWord, "-d": reWord, "-n": reNum, "-s": reNum, "-O": reOpts}},
	"false": {},
}

// mkfsDirs are where an absolute program path may point.
var mkfsDirs = []string{"/sbin", "/usr/sbin", "/bin", "/usr/bin"}

// CheckFSCommand refuses a filesystem command outside the allowlist.
func CheckFSCommand(cmd FSCommand) error {
	if len(cmd) == 0 || cmd[0] == "" {
		return fmt.Errorf("empty command: %w", ErrInvalid)
	}
	prog := cmd[0]
	if strings.Contains(prog, "/") {
		if !filepath.IsAbs(prog) || filepath.Clean(prog) != prog || !slices.Contains(mkfsDirs, filepath.Dir(prog)) {
			return fmt.Errorf("program %q: only the mkfs programs in %s may run: %w", prog, strings.Join(mkfsDirs, ", "), ErrInvalid)
		}
		prog = filepath.Base(prog)
	}
	rule, ok := mkfsRules[prog]
	if !ok {
		return fmt.Errorf("program %q is not one of %s: %w", cmd[0], strings.Join(knownMkfs(), ", "), ErrInvalid)
	}
	devices := 0
	for i := 1; i < len(cmd); i++ {
		w := cmd[i]
		switch {
		case w == DevicePlaceholder:
			devices++
			continue
		case slices.Contains(rule.flags, w):
			continue
		}
		if len(w) < 2 || w[0] != '-' {
			return fmt.Errorf("word %q of %s: not an option it allows: %w", w, prog, ErrInvalid)
		}
		opt, val := w[:2], w[2:]
		re, ok := rule.values[opt]
		if !ok {
			return fmt.Errorf("word %q: %s allows no option %s: %w", w, prog, opt, ErrInvalid)
		}
		if val == "" {
			if i+1 >= len(cmd) {
				return fmt.Errorf("option %s of %s has no value: %w", opt, prog, ErrInvalid)
			}
			i++
			val = cmd[i]
		}
		if !re.MatchString(val) {
			return fmt.Errorf("word %q: not a value %s %s allows: %w", val, prog, opt, ErrInvalid)
		}
	}
	switch {
	case rule.device && devices != 1:
		return fmt.Errorf("%s: the device placeholder %q must appear exactly once (found %d): %w", prog, DevicePlaceholder, devices, ErrInvalid)
	case !rule.device && len(cmd) > 1:
		return fmt.Errorf("word %q: %s takes no arguments: %w", cmd[1], prog, ErrInvalid)
	}
	return nil
}

func knownMkfs() []string {
	out := make([]string, 0, len(mkfsRules))
	for p := range mkfsRules {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
