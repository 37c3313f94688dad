package systemtests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// startVolcsi runs bin/volcsi (controller and node) for vm's local backend
// as node label, its mounts and state under dir, and returns a connection.
func startVolcsi(t *testing.T, vm *volmaster, dataDir, dir, label string) (*proc, *grpc.ClientConn) {
	t.Helper()
	sock := filepath.Join(dir, "csi.sock")
	p := startProc(t, "volcsi", []string{"--volmaster", vm.URL, "--endpoint", "unix://" + sock, "--host-label", label,
		"--mount-root", filepath.Join(dir, "mnt"), "--state-dir", filepath.Join(dir, "state"),
		"--local-data-dir", filepath.Join(dataDir, "local")}, "volcsi endpoint")
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return p, cc
}

// One volume, two orchestrators: a volume made with docker volume create is
// staged and published through volcsi once Docker released it; while
// either side holds it the other is refused naming the holder. volcsi
// killed (-9) after staging and restarted converges on the kubelet's
// re-issued calls, and unstaging leaves no mount and no lock.
func TestOneVolumeDockerAndCSI(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, loop devices and mounts")
	}
	data, csiDir := t.TempDir(), t.TempDir()
	vm := startVolmaster(t, data)
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"32MB"}}`, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	plugin := "vpsys-csi"
	startVolplugin(t, vm, data, plugin, "dockerhost")
	d := dockertest.Start(t, "vp-csi")
	img := d.Image(t)
	first, cc := startVolcsi(t, vm, data, csiDir, "k8snode")
	node := csipb.NewNodeClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	docker(t, d, "volume", "create", "-d", plugin, "policy1/shared")
	docker(t, d, "run", "-d", "--name", "holder", "-v", "policy1/shared:/data", img, "sh", "-c", "echo from-docker > /data/f && sync && sleep 300")
	writer := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	staging, target := filepath.Join(csiDir, "staging"), filepath.Join(csiDir, "pod", "data")
	stage := func() error {
		_, err := node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "policy1/shared", StagingTargetPath: staging, VolumeCapability: writer})
		return err
	}
	publish := func() error {
		_, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "policy1/shared", StagingTargetPath: staging, TargetPath: target, VolumeCapability: writer})
		return err
	}
	err := stage()
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `"dockerhost"`) {
		t.Fatalf("stage while a container holds the volume: %v, want FailedPrecondition naming dockerhost", err)
	}

	docker(t, d, "rm", "-f", "holder")
	if err := stage(); err != nil {
		t.Fatalf("stage after Docker released the volume: %v", err)
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "from-docker\n" {
		t.Fatalf("the pod's view reads %q %v", b, err)
	}
	_, errOut, err := d.Docker(ctx, "run", "--rm", "-v", "policy1/shared:/data", img, "true")
	if err == nil || !strings.Contains(errOut, `"k8snode"`) {
		t.Fatalf("docker run while the CSI node holds the volume: %v %s, want an error naming k8snode", err, errOut)
	}

	// volcsi dies hard; the kubelet re-issues stage and publish to the next.
	if err := first.signal(syscall.SIGKILL); err == nil {
		t.Fatal("volcsi survived SIGKILL")
	}
	_, cc = startVolcsi(t, vm, data, csiDir, "k8snode")
	node = csipb.NewNodeClient(cc)
	for _, step := range []func() error{stage, publish} {
		if err := step(); err != nil {
			t.Fatalf("re-issued call after the restart: %v", err)
		}
	}
	if out, _, _ := volcli(t, vm.URL, "", "--json", "use", "get", "policy1/shared"); !strings.Contains(out, `"hostname": "k8snode"`) {
		t.Errorf("lock after the restart: %s", out)
	}
	if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "policy1/shared", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "policy1/shared", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(csiDir)); len(infos) != 0 {
		t.Errorf("%d mounts left under %s after unstage", len(infos), csiDir)
	}
	if _, _, code := volcli(t, vm.URL, "", "use", "get", "policy1/shared"); code != 3 {
		t.Errorf("lock still there after unstage (volcli exit %d)", code)
	}
	if got := docker(t, d, "run", "--rm", "-v", "policy1/shared:/data", img, "cat", "/data/f"); got != "from-docker\n" {
		t.Errorf("Docker after the CSI node released it reads %q", got)
	}
	docker(t, d, "volume", "rm", "policy1/shared")
}
