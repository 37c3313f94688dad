package config

import (
	"bytes"
	"fmt"
	"path/filepath"
	"time"
)

// Global is the cluster-wide configuration, watched by every daemon so that a
// change applies without a restart. Field names are those of the original
// volplugin global files.
type Global struct {
	// TTL is the host lease time-to-live in seconds.
	TTL int64 `json:"TTL"`
	// Timeout bounds each backend operation (map, mount, mkfs...) in minutes.
	Timeout int64 `json:"Timeout"`
	// Debug turns on debug logging.
	Debug bool `json:"Debug"`
	// MountPath is the default mount root on volplugin hosts.
	MountPath string `json:"MountPath"`
}

// Defaults for fields a global document leaves out.
const (
	DefaultTTL       = 30
	DefaultTimeout   = 5
	DefaultMountPath = "/mnt/volplugin"
	maxTTL           = 24 * 60 * 60
	maxTimeout       = 24 * 60
)

// Host paths and bounds every daemon and volcli share, defined here once.
const (
	// DefaultPluginDir is where Docker looks for plugin sockets
	// (volplugin --socket-dir, volcli doctor --plugin-dir).
	DefaultPluginDir = "/run/docker/plugins"
	// DefaultEtcdTimeout bounds one etcd call, or the first contact with
	// etcd, when the caller sets none.
	DefaultEtcdTimeout = 10 * time.Second
)

// DefaultGlobal is the configuration in force before any upload.
func DefaultGlobal() Global {
	return Global{TTL: DefaultTTL, Timeout: DefaultTimeout, MountPath: DefaultMountPath}
}

// DecodeGlobal parses a global document; missing fields take their defaults.
func DecodeGlobal(data []byte) (Global, error) {
	var g Global
	if err := DecodeStrict(bytes.NewReader(data), &g); err != nil {
		return Global{}, fmt.Errorf("global config: %w", err)
	}
	if err := g.Normalize(); err != nil {
		return Global{}, err
	}
	return g, nil
}

// Normalize fills defaults and validates ranges.
func (g *Global) Normalize() error {
	d := DefaultGlobal()
	if g.TTL == 0 {
		g.TTL = d.TTL
	}
	if g.Timeout == 0 {
		g.Timeout = d.Timeout
	}
	if g.MountPath == "" {
		g.MountPath = d.MountPath
	}
	if g.TTL < 1 || g.TTL > maxTTL {
		return fmt.Errorf("global config: TTL %d must be 1..%d seconds: %w", g.TTL, maxTTL, ErrInvalid)
	}
	if g.Timeout < 1 || g.Timeout > maxTimeout {
		return fmt.Errorf("global config: Timeout %d must be 1..%d minutes: %w", g.Timeout, maxTimeout, ErrInvalid)
	}
	if !filepath.IsAbs(g.MountPath) || filepath.Clean(g.MountPath) != g.MountPath {
		return fmt.Errorf("global config: MountPath %q must be a clean absolute path: %w", g.MountPath, ErrInvalid)
	}
	return nil
}

// TTLDuration returns the lease TTL.
func (g Global) TTLDuration() time.Duration { return time.Duration(g.TTL) * time.Second }

// TimeoutDuration returns the per-operation timeout.
func (g Global) TimeoutDuration() time.Duration { return time.Duration(g.Timeout) * time.Minute }
