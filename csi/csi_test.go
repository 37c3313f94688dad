package csi_test

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/csi"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/volmaster"
	"github.com/volplugin/volplugin/volplugin"
)

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the node service makes loop devices, filesystems and mounts")
	}
}

// cluster is a volmaster on embedded etcd with the local backend, its
// images in dataDir.
type cluster struct {
	url     string
	api     *client.Client
	dataDir string
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	dataDir := t.TempDir()
	lb, err := local.New(local.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: map[string]storage.CRUD{config.BackendLocal: lb}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	api, _ := client.New(ts.URL)
	if _, err := api.PutGlobal(ctx, []byte(`{"TTL": 5, "Timeout": 30}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PutPolicy(ctx, "policy1", []byte(`{"backend":"local","create":{"size":"64MB"}}`)); err != nil {
		t.Fatal(err)
	}
	return &cluster{url: ts.URL, api: api, dataDir: dataDir}
}

// plugin is a running volcsi (controller and node) wired as cmd/volcsi
// wires it.
type plugin struct {
	endpoint string
	host     string
	stop     func()
}

// startPlugin starts volcsi for host with its mount root and state under
// dir; stop ends it (idempotent, also at cleanup).
func (c *cluster) startPlugin(t testing.TB, host, dir string) *plugin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := volplugin.Options{Volmaster: c.url, PluginName: "volcsi", Host: host,
		MountRoot: filepath.Join(dir, "mnt"), StateDir: filepath.Join(dir, "state"), LocalDataDir: c.dataDir, Log: quiet()}
	d, stopHost, err := volplugin.Start(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := csi.New(csi.Config{API: c.api, Controller: true, Node: d, Log: quiet(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	ln, err := csi.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	p := &plugin{endpoint: "unix://" + sock, host: host}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("volcsi %s: %v", host, err)
		}
		stopHost()
	}
	t.Cleanup(p.stop)
	return p
}

// cleanMounts is a safety net run at cleanup: whatever a failed test left
// mounted under root (binds, then the volumes themselves) is unmounted, the
// local backend's mounts through the backend so their loop devices go too.
func cleanMounts(t testing.TB, root, dataDir string) {
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
		slices.SortFunc(infos, func(a, b *mountinfo.Info) int { return b.ID - a.ID })
		for _, m := range infos {
			if filepath.Dir(filepath.Dir(m.Mountpoint)) != filepath.Join(root, "mnt") {
				_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
			}
		}
		lb, err := local.New(local.Config{DataDir: dataDir, MountRoot: filepath.Join(root, "mnt")})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		mounts, _ := lb.Mounted(ctx)
		for _, m := range mounts {
			_ = lb.Unmount(ctx, storage.Volume{Policy: m.Volume.Policy, Name: m.Volume.Name})
		}
	})
}

func mustRef(t testing.TB, id string) config.VolumeRef {
	t.Helper()
	ref, err := config.ParseVolumeRef(id)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
