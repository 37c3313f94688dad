// Package csi serves the Container Storage Interface for volplugin's
// volumes: the Controller service creates, lists, resizes and removes
// volumes through volmaster (the same policies and option validation as
// docker volume create), and the Node service mounts them through
// volplugin's own mount path (Host), under the host lease and the volume's
// mount lock, so that Kubernetes and Docker share one set of volumes and
// one lock per volume.
package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
)

// DefaultDriverName is the CSI driver name (CSIDriver, StorageClass
// provisioner).
const DefaultDriverName = "csi.volplugin.io"

// Config wires a Server.
type Config struct {
	// API is the volmaster client: every service needs it.
	API *client.Client
	// DriverName and Version are what GetPluginInfo reports.
	DriverName, Version string
	// Controller serves the Controller service.
	Controller bool
	// Node, if set, serves the Node service through it.
	Node Host
	// LocalDataDir is the node's local backend image directory: when it
	// is volmaster's (it holds the same identity), the node says so in its
	// topology.
	LocalDataDir string
	Log          *logrus.Logger
}

// Server is a CSI plugin: Identity always, Controller and Node as
// configured.
type Server struct {
	cfg Config

	mu sync.Mutex
	// busy holds the volumes a node call works on: a second call for one
	// of them fails fast (Aborted), as the spec allows, instead of
	// queueing behind it.
	busy map[config.VolumeRef]bool
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, errors.New("csi: no volmaster client")
	}
	if !cfg.Controller && cfg.Node == nil {
		return nil, errors.New("csi: neither the controller nor the node service to serve")
	}
	if cfg.DriverName == "" {
		cfg.DriverName = DefaultDriverName
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Server{cfg: cfg, busy: map[config.VolumeRef]bool{}}, nil
}

func (s *Server) volmaster() *client.Client { return s.cfg.API }

// begin marks ref busy until done is called; a volume already busy is
// config.ErrBusy (Aborted: the CO retries).
func (s *Server) begin(ref config.VolumeRef) (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[ref] {
		return nil, fmt.Errorf("an operation on volume %s is in progress on this node: %w", ref, config.ErrBusy)
	}
	s.busy[ref] = true
	return func() {
		s.mu.Lock()
		delete(s.busy, ref)
		s.mu.Unlock()
	}, nil
}

// Serve serves the CSI services on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	g := grpc.NewServer(grpc.UnaryInterceptor(s.logCall))
	csipb.RegisterIdentityServer(g, identity{s: s})
	if s.cfg.Controller {
		csipb.RegisterControllerServer(g, controller{s: s})
	}
	if s.cfg.Node != nil {
		csipb.RegisterNodeServer(g, node{s: s})
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve CSI: %w", err)
	case <-ctx.Done():
		g.Stop()
		return nil
	}
}

// logCall logs each failed call at the edge, where its error became a
// status.
func (s *Server) logCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		s.cfg.Log.WithField("call", info.FullMethod).WithError(err).Info("CSI call failed")
	} else {
		s.cfg.Log.WithField("call", info.FullMethod).Debug("CSI call")
	}
	return resp, err
}

// Listen listens on a CSI endpoint, unix:///path or a plain path, replacing
// a socket left behind (mode 0600: only root, the kubelet, talks to it).
func Listen(endpoint string) (net.Listener, error) {
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	} else if strings.Contains(endpoint, "://") {
		return nil, fmt.Errorf("endpoint %q: only unix sockets are served: %w", endpoint, config.ErrInvalid)
	}
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("endpoint %q: an absolute socket path is needed: %w", endpoint, config.ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("endpoint %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("endpoint %s: another plugin is serving it: %w", path, config.ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
