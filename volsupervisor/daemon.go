package volsupervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/bearer"
	"github.com/volplugin/volplugin/internal/diag"
	"github.com/volplugin/volplugin/internal/etcdclient"
	"github.com/volplugin/volplugin/storage/backend"
)

// Options are volsupervisor's command-line settings.
type Options struct {
	Etcd         []string
	Prefix       string
	Name         string
	LocalDataDir string
	MountRoot    string
	Log          *logrus.Logger
	// EtcdCA, EtcdCert and EtcdKey configure TLS to etcd.
	EtcdCA, EtcdCert, EtcdKey string
	// CephConf, if set, enables the Ceph backend.
	CephConf string
	// Listen is the address of the /info and /healthz endpoints ("" for
	// none).
	Listen string
	// ListenStarted, if set, is called with the base URL of Listen.
	ListenStarted func(url string)
	// MetricsTokenFile, if set, holds the bearer token GET /metrics and
	// /info require: without it any local user reads them.
	MetricsTokenFile string
	// Started, if set, is called once the supervisor is about to campaign.
	Started func(name string)
}

// Serve runs a supervisor until ctx ends.
func Serve(ctx context.Context, o Options) error {
	if len(o.Etcd) == 0 {
		return fmt.Errorf("--etcd is required (volmaster prints its embedded etcd's client URL): %w", config.ErrInvalid)
	}
	keys, err := config.NewKeys(o.Prefix)
	if err != nil {
		return err
	}
	cli, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: o.Etcd, CA: o.EtcdCA, Cert: o.EtcdCert, Key: o.EtcdKey})
	if err != nil {
		return err
	}
	defer cli.Close()
	backends, err := backend.Open(backend.Options{LocalDataDir: o.LocalDataDir, MountRoot: o.MountRoot, CephConf: o.CephConf})
	if err != nil {
		return err
	}
	defer backends.Close()
	s, err := New(Config{
		Client: cli, Keys: keys, Name: o.Name, Log: o.Log,
		Snapshotters: backends.Snapshotters, Backends: backends.CRUD,
	})
	if err != nil {
		return err
	}
	if o.Listen != "" {
		tok, err := bearer.FromFile(o.MetricsTokenFile)
		if err != nil {
			return fmt.Errorf("--metrics-token-file: %w", err)
		}
		ln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", o.Listen, err)
		}
		hs := &http.Server{Handler: s.infoHandler(tok), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		o.Log.WithField("url", "http://"+ln.Addr().String()+"/info").Info("status endpoint")
		if o.ListenStarted != nil {
			o.ListenStarted("http://" + ln.Addr().String())
		}
	}
	o.Log.WithFields(logrus.Fields{"name": o.Name, "etcd": o.Etcd}).Info("volsupervisor campaigning")
	if o.Started != nil {
		o.Started(o.Name)
	}
	return s.Run(ctx)
}

// infoHandler serves GET /info (this supervisor's status), /metrics and
// /healthz; with a token, /info and /metrics require it as a bearer token.
func (s *Supervisor) infoHandler(token string) http.Handler {
	mux := http.NewServeMux()
	started := time.Now()
	mux.Handle("GET /info", bearer.Require(token, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Process diag.Process `json:"process"`
			config.SupervisorStatus
		}{diag.Info("volsupervisor", started), s.Status()})
	})))
	mux.Handle("GET /metrics", bearer.Require(token, s.metrics.handler()))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
