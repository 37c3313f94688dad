package csi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/volplugin/volplugin/storage/backend/ceph"
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

// cluster is a volmaster on embedded etcd with one backend: the local one
// (images in dataDir) or Ceph (cephConf, the shared scripts/ceph-dev
// cluster). policy is the policy its volumes are made from.
type cluster struct {
	url      string
	api      *client.Client
	dataDir  string
	cephConf string
	policy   string
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	return startClusterOn(t, config.BackendLocal, "")
}

func startClusterOn(t testing.TB, backend, cephConf string) *cluster {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	c := &cluster{dataDir: t.TempDir(), cephConf: cephConf, policy: "policy1"}
	var crud interface {
		storage.CRUD
		storage.Snapshotter
	}
	policy := `{"backend":"local","create":{"size":"64MB"}}`
	if backend == config.BackendCeph {
		cb, err := ceph.New(ceph.Config{Conf: cephConf})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cb.Close() })
		crud = cb
		// flatten: a volume made from a snapshot must not hang on it (CSI
		// deletes snapshots and sources before their copies).
		policy = `{"backend":"ceph","driver":{"pool":"rbd","options":{"flatten":"true"}},"create":{"size":"64MB"}}`
		// Runs share the cluster: a policy of its own keeps this run's
		// images apart (their names start with it).
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.policy = "csi" + hex.EncodeToString(b)
	} else {
		lb, err := local.New(local.Config{DataDir: c.dataDir})
		if err != nil {
			t.Fatal(err)
		}
		// As the volmaster daemon does at start: nodes on this data dir
		// find its identity.
		if _, err := lb.StoreID(); err != nil {
			t.Fatal(err)
		}
		crud = lb
	}
	srv, err := volmaster.New(volmaster.Config{Client: cli, Keys: keys, Log: quiet(), Backends: map[string]storage.CRUD{backend: crud},
		Snapshotters: map[string]storage.Snapshotter{backend: crud}})
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
	c.url = ts.URL
	c.api, _ = client.New(ts.URL)
	if _, err := c.api.PutGlobal(ctx, []byte(`{"TTL": 5, "Timeout": 30}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.api.PutPolicy(ctx, c.policy, []byte(policy)); err != nil {
		t.Fatal(err)
	}
	if backend == config.BackendCeph {
		t.Cleanup(func() { c.purge(t) })
	}
	return c
}

// purge destroys every volume of the cluster's policy, the trash included:
// on a shared Ceph cluster nothing of a run may stay. A second round takes
// what the first could not while a copy still hung on it (a failed test
// may leave an unflattened clone).
func (c *cluster) purge(t testing.TB) {
	if c.purgeOnce(t, false) {
		c.purgeOnce(t, true)
	}
}

// purgeOnce runs one round of purge, reporting failures only if last; it
// tells whether something failed.
func (c *cluster) purgeOnce(t testing.TB, last bool) (failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errorf := func(format string, args ...any) {
		failed = true
		if last {
			t.Errorf(format, args...)
		}
	}
	refs, err := c.api.Volumes(ctx, c.policy)
	if err != nil {
		errorf("purge: %v", err)
	}
	for _, ref := range refs {
		if _, err := c.api.RemoveVolume(ctx, ref, config.RemoveOptions{Unprotect: true}); err != nil {
			errorf("purge %s: %v", ref, err)
		}
	}
	trash, err := c.api.Trash(ctx, config.VolumeRef{Policy: c.policy})
	if err != nil {
		errorf("purge: %v", err)
	}
	for _, e := range trash {
		if err := c.api.PurgeTrash(ctx, config.TrashRef{Volume: e.Volume.Ref(), ID: e.ID}); err != nil {
			errorf("purge %s: %v", e.ID, err)
		}
	}
	return failed
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
	if c.cephConf != "" {
		o.CephConf, o.CephMapper, o.CephRunDir = c.cephConf, "fuse", filepath.Join(dir, "run")
	}
	d, stopHost, err := volplugin.Start(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := csi.New(csi.Config{API: c.api, Controller: true, Node: d, LocalDataDir: c.dataDir, Log: quiet(), Version: "test"})
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
// mounted under dir (binds, then the volumes themselves) is unmounted, the
// volumes through their backend so that loop devices and rbd-fuse go too.
func (c *cluster) cleanMounts(t testing.TB, dir string) {
	t.Cleanup(func() {
		root := filepath.Join(dir, "mnt")
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		slices.SortFunc(infos, func(a, b *mountinfo.Info) int { return b.ID - a.ID })
		for _, m := range infos {
			if !strings.HasPrefix(m.Mountpoint, root+"/") && !strings.HasPrefix(m.Mountpoint, filepath.Join(dir, "run")+"/") {
				_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
			}
		}
		var m storage.Mounter
		if c.cephConf != "" {
			cb, err := ceph.New(ceph.Config{Conf: c.cephConf, MountRoot: root, Mapper: "fuse", RunDir: filepath.Join(dir, "run")})
			if err != nil {
				return
			}
			defer cb.Close()
			m = cb
		} else {
			lb, err := local.New(local.Config{DataDir: c.dataDir, MountRoot: root})
			if err != nil {
				return
			}
			m = lb
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		mounts, _ := m.Mounted(ctx)
		for _, mnt := range mounts {
			_ = m.Unmount(ctx, storage.Volume{Policy: mnt.Volume.Policy, Name: mnt.Volume.Name})
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
