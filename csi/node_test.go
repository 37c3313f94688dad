package csi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/docker/go-plugins-helpers/volume"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/volplugin/volplugin/csi"
	"github.com/volplugin/volplugin/volplugin"
)

// conn is a CSI client of one plugin.
type conn struct {
	csipb.ControllerClient
	csipb.NodeClient
}

func dial(t testing.TB, p *plugin) conn {
	t.Helper()
	cc, err := grpc.NewClient(p.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return conn{csipb.NewControllerClient(cc), csipb.NewNodeClient(cc)}
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}
}

var writer = mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

// wantCode fails unless err has code and its message holds every word.
func wantCode(t *testing.T, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("%s: %q does not name %q", what, st.Message(), w)
		}
	}
}

func stage(ctx context.Context, c conn, id, staging string) error {
	_, err := c.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: writer})
	return err
}

func unstage(t *testing.T, ctx context.Context, c conn, id, staging string) {
	t.Helper()
	if _, err := c.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage %s: %v", staging, err)
	}
}

// TestOneLockForCSIAndDocker: a volume staged by a CSI node holds the same
// mount lock a Docker mount takes (volplugin's Driver.Mount, what the
// plugin socket calls): while one side holds it the other is refused with
// the holder's name, and after a release the other side mounts the same
// data. It also checks the name mapping, read-only publish, capability
// validation and removal of a staged volume.
func TestOneLockForCSIAndDocker(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	dir1, dir2, dirD := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{dir1, dir2, dirD} {
		c.cleanMounts(t, d)
	}
	n1, n2 := dial(t, c.startPlugin(t, "node1", dir1)), dial(t, c.startPlugin(t, "node2", dir2))
	hctx, hcancel := context.WithCancel(context.Background())
	docker, stopDocker, err := volplugin.Start(hctx, volplugin.Options{Volmaster: c.url, PluginName: "volplugin", Host: "dockerhost",
		MountRoot: filepath.Join(dirD, "mnt"), StateDir: filepath.Join(dirD, "state"), LocalDataDir: c.dataDir, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hcancel(); stopDocker() })
	ctx := context.Background()

	// A Kubernetes-style name is not a volume name: it maps to a hashed one.
	name := "pvc-0b5e/1"
	req := &csipb.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csipb.VolumeCapability{writer},
		Parameters: map[string]string{csi.ParamPolicy: "policy1", "filesystem": "ext4"}, CapacityRange: &csipb.CapacityRange{RequiredBytes: 48 << 20}}
	vol, err := n1.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	if want := "policy1/" + csi.VolumeName(name); id != want || !strings.HasPrefix(csi.VolumeName(name), "csi-") {
		t.Fatalf("volume ID %q, want %q (hashed)", id, want)
	}
	if again, err := n2.CreateVolume(ctx, req); err != nil || again.GetVolume().GetVolumeId() != id {
		t.Fatalf("repeated CreateVolume: %v %v", again, err)
	}
	bigger := &csipb.CreateVolumeRequest{Name: name, VolumeCapabilities: req.VolumeCapabilities, Parameters: req.Parameters,
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 80 << 20}}
	_, err = n1.CreateVolume(ctx, bigger)
	wantCode(t, "CreateVolume of the same name, bigger", err, codes.AlreadyExists)
	bad := &csipb.CreateVolumeRequest{Name: "other", VolumeCapabilities: req.VolumeCapabilities, Parameters: map[string]string{csi.ParamPolicy: "policy1", "colour": "red"}}
	_, err = n1.CreateVolume(ctx, bad)
	wantCode(t, "CreateVolume with an unknown option", err, codes.InvalidArgument, "colour")
	multi := []*csipb.VolumeCapability{mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
	if v, err := n1.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: multi}); err != nil || v.GetConfirmed() != nil || !strings.Contains(v.GetMessage(), "mount lock") {
		t.Errorf("multi-node writer on a locked volume: %v %v, want unconfirmed", v, err)
	}

	// node1 stages and publishes, read-write and read-only.
	staging1, target1, ro1 := filepath.Join(dir1, "staging"), filepath.Join(dir1, "pods", "rw"), filepath.Join(dir1, "pods", "ro")
	if err := stage(ctx, n1, id, staging1); err != nil {
		t.Fatal(err)
	}
	if err := stage(ctx, n1, id, staging1); err != nil {
		t.Fatalf("staging again: %v", err)
	}
	if _, err := n1.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: target1, VolumeCapability: writer}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target1, "hello"), []byte("from node1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: ro1, VolumeCapability: writer, Readonly: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro1, "nope"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through a read-only publish: %v, want EROFS", err)
	}
	_, err = n1.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: ro1, VolumeCapability: writer})
	wantCode(t, "publishing read-write where it is published read-only", err, codes.AlreadyExists)
	if _, err := n1.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: ro1, VolumeCapability: writer, Readonly: true}); err != nil {
		t.Errorf("the same read-only publish again: %v", err)
	}

	// The other CSI node and the Docker host are refused, naming node1.
	wantCode(t, "node2 stage while node1 holds it", stage(ctx, n2, id, filepath.Join(dir2, "staging")), codes.FailedPrecondition, `"node1"`)
	if _, err := docker.Mount(&volume.MountRequest{Name: id, ID: "docker-1"}); err == nil || !strings.Contains(err.Error(), `"node1"`) {
		t.Fatalf("Docker mount while node1 holds it: %v, want an error naming node1", err)
	}
	_, err = n2.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, "DeleteVolume while staged", err, codes.FailedPrecondition, "node1")

	for _, p := range []string{target1, ro1, target1} {
		if _, err := n1.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: p}); err != nil {
			t.Fatalf("unpublish %s: %v", p, err)
		}
	}
	unstage(t, ctx, n1, id, staging1)
	unstage(t, ctx, n1, id, staging1)
	if m, _ := mountinfo.Mounted(staging1); m {
		t.Fatal("staging path still mounted after unstage")
	}

	// Docker takes it now; node2 is refused naming the Docker host.
	path, err := docker.MountVolume(ctx, mustRef(t, id), "docker-1")
	if err != nil {
		t.Fatalf("Docker mount after node1 released it: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "hello")); err != nil || string(b) != "from node1" {
		t.Fatalf("Docker reads %q %v", b, err)
	}
	staging2 := filepath.Join(dir2, "staging")
	wantCode(t, "node2 stage while Docker holds it", stage(ctx, n2, id, staging2), codes.FailedPrecondition, `"dockerhost"`)
	if err := docker.Unmount(&volume.UnmountRequest{Name: id, ID: "docker-1"}); err != nil {
		t.Fatal(err)
	}
	if err := stage(ctx, n2, id, staging2); err != nil {
		t.Fatalf("node2 stage after Docker released it: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(staging2, "hello")); err != nil || string(b) != "from node1" {
		t.Fatalf("node2 reads %q %v", b, err)
	}
	unstage(t, ctx, n2, id, staging2)
	for range 2 {
		if _, err := n2.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("DeleteVolume: %v", err)
		}
	}
}
