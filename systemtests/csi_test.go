package systemtests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/volplugin/volplugin/csi"
	"github.com/volplugin/volplugin/storage/backend/local"
	"github.com/volplugin/volplugin/systemtests/dockertest"
)

// startVolcsi runs bin/volcsi (controller and node) for vm as node label,
// its mounts and state under dir, with the host flags of the backend
// (hostArgs), and returns a connection.
func startVolcsi(t *testing.T, vm *volmaster, dataDir, dir, label string, hostArgs ...string) (*proc, *grpc.ClientConn) {
	t.Helper()
	sock := filepath.Join(dir, "csi.sock")
	args := append([]string{"--volmaster", vm.URL, "--endpoint", "unix://" + sock, "--host-label", label,
		"--mount-root", filepath.Join(dir, "mnt"), "--state-dir", filepath.Join(dir, "state"),
		"--local-data-dir", filepath.Join(dataDir, "local")}, hostArgs...)
	p := startProc(t, "volcsi", args, "volcsi endpoint")
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return p, cc
}

// csiBackend is one backend TestOneVolumeDockerAndCSI runs on.
type csiBackend struct {
	name string
	// policy is the policy's JSON; volmasterArgs what volmaster needs for
	// the backend; hostArgs what volplugin and volcsi need, their rbd-fuse
	// mount points and PID files in runDir.
	policy        string
	volmasterArgs []string
	hostArgs      func(runDir string) []string
	// conf is the Ceph cluster's conf ("" for local).
	conf string
}

func csiBackends() []csiBackend {
	local := csiBackend{name: "local", policy: `{"backend":"local","create":{"size":"32MB"}}`,
		hostArgs: func(string) []string { return nil }}
	ceph := csiBackend{name: "ceph", policy: `{"backend":"ceph","driver":{"pool":"rbd"},"create":{"size":"64MB"}}`,
		conf: os.Getenv("CEPH_CONF")}
	ceph.volmasterArgs = []string{"--ceph-conf", ceph.conf}
	ceph.hostArgs = func(runDir string) []string {
		return []string{"--ceph-conf", ceph.conf, "--ceph-mapper", "fuse", "--ceph-run-dir", runDir}
	}
	return []csiBackend{local, ceph}
}

// One volume, two orchestrators, on each backend: a volume made with docker
// volume create is staged and published through volcsi once Docker
// released it; while either side holds it the other is refused naming the
// holder. volcsi killed (-9) after staging and restarted converges on the
// kubelet's re-issued calls, and unstaging leaves no mount, no loop device,
// no rbd-fuse and no lock.
func TestOneVolumeDockerAndCSI(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd, loop devices and mounts")
	}
	for _, b := range csiBackends() {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "ceph" {
				cephConf(t)
			}
			oneVolumeDockerAndCSI(t, b, "k8snode")
		})
	}
	// The same, with volcsi given volplugin's own host label: the lock's
	// holder (which daemon of the host) keeps them apart.
	t.Run("local-one-label", func(t *testing.T) { oneVolumeDockerAndCSI(t, csiBackends()[0], "dockerhost") })
}

// oneVolumeDockerAndCSI runs the test on b with volcsi labelled csiLabel
// (volplugin's is dockerhost).
func oneVolumeDockerAndCSI(t *testing.T, b csiBackend, csiLabel string) {
	data, csiDir := t.TempDir(), t.TempDir()
	vm := startVolmaster(t, data, b.volmasterArgs...)
	// The Ceph cluster is shared: a policy of its own keeps this run's
	// image apart (image names start with the policy).
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	policy := "csisys" + hex.EncodeToString(rnd)
	vol := policy + "/shared"
	if _, e, code := volcli(t, vm.URL, b.policy, "policy", "upload", policy); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if b.conf != "" {
		// Registered first, run last: a failed run's rbd-fuse, loops and
		// mounts go before its image.
		t.Cleanup(func() {
			if _, _, code := volcli(t, vm.URL, "", "volume", "get", vol); code != 3 {
				_, _, _ = volcli(t, vm.URL, "", "use", "force-remove", vol)
				removeForGood(t, vm.URL, vol)
			}
			if imgs := rbdImages(t, b.conf); strings.Contains(imgs, policy+":") {
				t.Errorf("images of %s left in the cluster: %q", policy, imgs)
			}
		})
		t.Cleanup(func() { cleanupCephHosts(t, data); cleanupCephHosts(t, csiDir) })
	}
	plugin := "vpsys-csi-" + b.name
	startVolplugin(t, vm, data, plugin, "dockerhost", b.hostArgs(filepath.Join(data, "run-docker"))...)
	d := dockertest.Start(t, "vp-csi-"+b.name)
	img := d.Image(t)
	csiArgs := b.hostArgs(filepath.Join(csiDir, "run-csi"))
	first, cc := startVolcsi(t, vm, data, csiDir, csiLabel, csiArgs...)
	node := csipb.NewNodeClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// volmaster made its local data dir's identity at start; the node,
	// on the same directory, reports it beside its host label.
	info, err := node.NodeGetInfo(ctx, &csipb.NodeGetInfoRequest{})
	id, _ := local.ReadStoreID(filepath.Join(data, "local"))
	if want := map[string]string{csi.TopologyHost: csiLabel, csi.TopologyLocalStore: id}; err != nil || id == "" ||
		!maps.Equal(info.GetAccessibleTopology().GetSegments(), want) {
		t.Errorf("NodeGetInfo = %v, %v; want topology %v", info, err, want)
	}

	docker(t, d, "volume", "create", "-d", plugin, vol)
	if b.conf != "" {
		if imgs := rbdImages(t, b.conf); !strings.Contains(imgs, policy+":shared") {
			t.Fatalf("no image for %s in the cluster: %q", vol, imgs)
		}
	}
	docker(t, d, "run", "-d", "--name", "holder", "-v", vol+":/data", img, "sh", "-c", "echo from-docker > /data/f && sync && sleep 300")
	writer := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	staging, target := filepath.Join(csiDir, "staging"), filepath.Join(csiDir, "pod", "data")
	stage := func() error {
		_, err := node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: vol, StagingTargetPath: staging, VolumeCapability: writer})
		return err
	}
	publish := func() error {
		_, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: vol, StagingTargetPath: staging, TargetPath: target, VolumeCapability: writer})
		return err
	}
	// The refusal names the holder; its exact words are the lock's. With
	// one label for both, it names the holding daemon too.
	names := func(msg, host, daemon string) bool {
		return strings.Contains(msg, "mounted on host") && strings.Contains(msg, host) &&
			(csiLabel != "dockerhost" || strings.Contains(msg, "by "+daemon+"."))
	}
	err = stage()
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !names(st.Message(), "dockerhost", plugin) {
		t.Fatalf("stage while a container holds the volume: %v, want FailedPrecondition naming dockerhost (and %s)", err, plugin)
	}

	docker(t, d, "rm", "-f", "holder")
	if err := stage(); err != nil {
		t.Fatalf("stage after Docker released the volume: %v", err)
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(got) != "from-docker\n" {
		t.Fatalf("the pod's view reads %q %v", got, err)
	}
	_, errOut, err := d.Docker(ctx, "run", "--rm", "-v", vol+":/data", img, "true")
	if err == nil || !names(errOut, csiLabel, "volcsi") {
		t.Fatalf("docker run while the CSI node holds the volume: %v %s, want an error naming %s (and volcsi)", err, errOut, csiLabel)
	}

	// volcsi dies hard; the kubelet re-issues stage and publish to the next.
	if err := first.signal(syscall.SIGKILL); err == nil {
		t.Fatal("volcsi survived SIGKILL")
	}
	_, cc = startVolcsi(t, vm, data, csiDir, csiLabel, csiArgs...)
	node = csipb.NewNodeClient(cc)
	for _, step := range []func() error{stage, publish} {
		if err := step(); err != nil {
			t.Fatalf("re-issued call after the restart: %v", err)
		}
	}
	if out, _, _ := volcli(t, vm.URL, "", "--json", "use", "get", vol); !strings.Contains(out, `"hostname": "`+csiLabel+`"`) || !strings.Contains(out, `"holder": "volcsi.`) {
		t.Errorf("lock after the restart: %s", out)
	}
	if got, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(got) != "from-docker\n" {
		t.Errorf("the pod's view after the restart reads %q %v", got, err)
	}
	// Adopted, not mapped a second time.
	if l := append(loopsUnder(data), loopsUnder(csiDir)...); len(l) != 1 {
		t.Errorf("loop devices after the restart: %v, want the one of the first stage", l)
	}
	if p := rbdFusePIDs(csiDir); b.conf != "" && len(p) != 1 {
		t.Errorf("rbd-fuse processes after the restart: %v, want the one of the first stage", p)
	}
	if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: vol, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: vol, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, csiDir)
	checkNoLeaks(t, data)
	if _, _, code := volcli(t, vm.URL, "", "use", "get", vol); code != 3 {
		t.Errorf("lock still there after unstage (volcli exit %d)", code)
	}
	if got := docker(t, d, "run", "--rm", "-v", vol+":/data", img, "cat", "/data/f"); got != "from-docker\n" {
		t.Errorf("Docker after the CSI node released it reads %q", got)
	}
	docker(t, d, "volume", "rm", vol)
	checkNoLeaks(t, data)
	purgeTrash(t, vm.URL, vol)
	if b.conf != "" {
		if imgs := rbdImages(t, b.conf); strings.Contains(imgs, policy+":") {
			t.Errorf("image left after volume rm and trash purge: %q", imgs)
		}
	}
}

// checkNoLeaks fails t for any mount, loop device or rbd-fuse process left
// under dir. Unmapping ends with the rbd-fuse process's exit, which may
// trail the call that asked for it by a moment.
func checkNoLeaks(t *testing.T, dir string) {
	t.Helper()
	waitForQuiet(t, 15*time.Second, func() bool {
		return len(mountsUnder(dir)) == 0 && len(loopsUnder(dir)) == 0 && len(rbdFusePIDs(dir)) == 0
	})
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", dir, m)
	}
	if l := loopsUnder(dir); len(l) > 0 {
		t.Errorf("loop devices left under %s: %v", dir, l)
	}
	if p := rbdFusePIDs(dir); len(p) > 0 {
		t.Errorf("rbd-fuse processes left under %s: %v", dir, p)
	}
}

// volcsi's image as deploy/kubernetes names it, made without a registry:
// scripts/plugin csi-image puts the built binary on the plugin's Debian
// rootfs (its libraries resolve there) and `docker import`s it; the image
// runs volcsi --help as its entrypoint and holds the tools the node
// service runs.
func TestVolcsiImage(t *testing.T) {
	if os.Geteuid() != 0 {
		dockertest.SkipOrFail(t, "needs root for dockerd and the rootfs build")
	}
	manifest, err := os.ReadFile("../deploy/kubernetes/node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var image string
	for line := range strings.Lines(string(manifest)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "image: "); ok && strings.Contains(v, "volcsi") {
			image = v
		}
	}
	if image == "" {
		t.Fatal("deploy/kubernetes/node.yaml names no volcsi image")
	}
	d := dockertest.Start(t, "vp-csi-image")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "../scripts/plugin", "csi-image", image, filepath.Join(binDir, "volcsi"))
	build.Env = d.Env()
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/plugin csi-image: %v\n%s", err, out)
	}
	t.Logf("scripts/plugin csi-image took %s", time.Since(start).Round(time.Second))
	help := docker(t, d, "run", "--rm", "--network", "none", image, "--help")
	for _, want := range []string{"volcsi", "--endpoint", "--host-label", "--ceph-conf"} {
		if !strings.Contains(help, want) {
			t.Errorf("volcsi --help in the image lacks %q:\n%s", want, help)
		}
	}
	tools := []string{"mount", "umount", "losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "resize2fs", "xfs_growfs", "fsfreeze", "rbd-fuse"}
	if out, errOut, err := d.Docker(ctx, append([]string{"run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
		`for t in "$@"; do command -v "$t" >/dev/null || echo "missing $t"; done`, "sh"}, tools...)...); err != nil || out != "" {
		t.Errorf("node tools in the image: %v %s %s", err, out, errOut)
	}
}
