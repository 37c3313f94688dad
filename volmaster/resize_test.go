package volmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// ext4Bytes reads an ext4 image's size from its superblock.
func ext4Bytes(t *testing.T, image string) int64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", image).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs %s: %v\n%s", image, err, out)
	}
	field := func(name string) int64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("dumpe2fs shows no %s:\n%s", name, out)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	return field("Block count") * field("Block size")
}

// POST .../resize grows a volume: the image, its ext4 filesystem (offline,
// for the local backend, when not mounted here) and the record. Shrinking,
// bad sizes and unlocked volumes are refused and change nothing; a mounted
// volume grows too (its host grows the filesystem).
func TestResizeVolume(t *testing.T) {
	if _, err := exec.LookPath("dumpe2fs"); err != nil {
		t.Skipf("dumpe2fs missing: %v", err)
	}
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	image := filepath.Join(h.dataDir, "images", "p", "v.img")
	// As volplugin's first mount would have left it.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if got := ext4Bytes(t, image); got != 10<<20 {
		t.Fatalf("filesystem before: %d bytes", got)
	}

	var v config.Volume
	_ = json.Unmarshal([]byte(h.must(t, 200, "POST", "/v1/volumes/p/v/resize", `{"size":"24MB"}`)), &v)
	if v.Create.Size != "24MB" || v.ResizedAt.IsZero() {
		t.Errorf("answer: size %q, resized-at %v", v.Create.Size, v.ResizedAt)
	}
	if fi, err := os.Stat(image); err != nil || fi.Size() != 24<<20 {
		t.Errorf("image after the resize: %v, %v", fi, err)
	}
	if got := ext4Bytes(t, image); got != 24<<20 {
		t.Errorf("filesystem after the resize: %d bytes, want %d", got, 24<<20)
	}
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/v", "")), &v)
	if v.Create.Size != "24MB" {
		t.Errorf("record after the resize: %q", v.Create.Size)
	}
	// The same size again is a no-op that succeeds (it finishes a grow).
	h.must(t, 200, "POST", "/v1/volumes/p/v/resize", `{"size":"24MB"}`)

	unchanged := func(status int, path, body, want string) {
		t.Helper()
		before := h.dump(t)
		if out := h.must(t, status, "POST", path, body); !strings.Contains(out, want) {
			t.Errorf("POST %s %s: %s lacks %q", path, body, out, want)
		}
		if after := h.dump(t); !reflect.DeepEqual(before, after) {
			t.Errorf("POST %s %s changed etcd", path, body)
		}
		if fi, _ := os.Stat(image); fi.Size() != 24<<20 {
			t.Errorf("POST %s %s changed the image to %d bytes", path, body, fi.Size())
		}
	}
	unchanged(400, "/v1/volumes/p/v/resize", `{"size":"12MB"}`, "volumes only grow")
	unchanged(400, "/v1/volumes/p/v/resize", `{"size":"lots"}`, "not a size")
	unchanged(400, "/v1/volumes/p/v/resize", `{}`, "size is empty")
	unchanged(400, "/v1/volumes/p/v/resize", `{"size":"1GB","shrink":true}`, "unknown field")
	unchanged(404, "/v1/volumes/p/nope/resize", `{"size":"1GB"}`, "not found")
	// An unlocked volume's mounts take no lock: nothing says it is unmounted.
	// (Only an nfs policy may be unlocked now: this local one is a volume
	// stored before that rule, which must still read.)
	h.must(t, 200, "PUT", "/v1/policies/shared", `{"backend":"local","create":{"size":"10MB"}}`)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"shared","name":"s"}`)
	h.storeLegacyUnlocked(t, config.VolumeRef{Policy: "shared", Name: "s"})
	before := h.dump(t)
	if out := h.must(t, 400, "POST", "/v1/volumes/shared/s/resize", `{"size":"20MB"}`); !strings.Contains(out, "unlocked") {
		t.Errorf("resize of an unlocked volume: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(h.dataDir, "images", "shared", "s.img")); err != nil || fi.Size() != 10<<20 {
		t.Errorf("unlocked volume's image after the refused resize: %v, %v", fi, err)
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Error("the refused resize of an unlocked volume changed etcd")
	}

	var lease config.HostLease
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/leases", `{"host":"h1"}`)), &lease)
	h.must(t, 200, "PUT", "/v1/uses/p/v", fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m"}`, lease.ID))
	_ = json.Unmarshal([]byte(h.must(t, 200, "POST", "/v1/volumes/p/v/resize", `{"size":"48MB"}`)), &v)
	if fi, err := os.Stat(image); err != nil || fi.Size() != 48<<20 || v.Create.Size != "48MB" {
		t.Errorf("resize while h1 holds the lock: image %v (%v), record %q", fi, err, v.Create.Size)
	}
	// h1 may be mounting it right now: its filesystem is h1's to grow, never
	// checked or grown offline here.
	if got := ext4Bytes(t, image); got != 24<<20 {
		t.Errorf("filesystem of a volume a host holds: %d bytes, want it left at %d", got, 24<<20)
	}
	// Another operation on the volume still excludes a resize.
	hold, err := h.srv.holder(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Store().BeginOp(t.Context(), config.VolumeRef{Policy: "p", Name: "v"}, "snapshot", hold, false); err != nil {
		t.Fatal(err)
	}
	unchanged2 := h.dump(t)
	if out := h.must(t, 409, "POST", "/v1/volumes/p/v/resize", `{"size":"64MB"}`); !strings.Contains(out, "busy (snapshot") {
		t.Errorf("resize during a snapshot: %s", out)
	}
	if after := h.dump(t); !reflect.DeepEqual(unchanged2, after) {
		t.Error("the refused resize during a snapshot changed etcd")
	}
}

// storeLegacyUnlocked marks a stored volume unlocked, as a volume created
// before unlocked was refused on block backends, and waits until the read
// cache has it.
func (h *harness) storeLegacyUnlocked(t *testing.T, ref config.VolumeRef) {
	t.Helper()
	ctx := context.Background()
	cli, key := h.srv.Store().Client(), h.srv.Store().Keys().Volume(ref)
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("volume record of %s: %v", ref, err)
	}
	var rec map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	rec["unlocked"] = true
	b, _ := json.Marshal(rec)
	put, err := cli.Put(ctx, key, string(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.cache.WaitRevision(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
}

// A filesystem grow that fails after the image grew (here: the volume is
// mounted read-only where volmaster grows it online, so resize2fs is
// refused: a real failure, as a sandbox without CAP_SYS_RESOURCE gives any
// online ext4 grow) still records the new size, since the image
// cannot shrink back, and answers an error that says so; the same resize
// again, once the filesystem can grow, finishes it.
func TestResizeRecordsGrownImageWhenFilesystemGrowFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop device")
	}
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"g"}`)
	image := filepath.Join(h.dataDir, "images", "p", "g.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := filepath.Join(h.mountRoot, "p", "g")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", image).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		_ = exec.Command("umount", mnt).Run()
		_ = exec.Command("losetup", "-d", dev).Run()
	})
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o ro: %v\n%s", err, out)
	}
	body := h.must(t, 500, "POST", "/v1/volumes/p/g/resize", `{"size":"24MB"}`)
	if !strings.Contains(body, "image and record are now 24MB") || !strings.Contains(body, "filesystem was not grown") {
		t.Errorf("failed grow answered %s", body)
	}
	var v config.Volume
	_ = json.Unmarshal([]byte(h.must(t, 200, "GET", "/v1/volumes/p/g", "")), &v)
	if fi, err := os.Stat(image); err != nil || fi.Size() != 24<<20 || v.Create.Size != "24MB" || v.ResizedAt.IsZero() {
		t.Fatalf("after the failed grow: image %v (%v), record %q resized-at %v; want both at 24MB", fi, err, v.Create.Size, v.ResizedAt)
	}
	if got := ext4Bytes(t, image); got != 10<<20 {
		t.Fatalf("filesystem after the failed grow: %d bytes, want it still 10MB", got)
	}
	// Unmounted, the same resize again grows it offline (online ext4 grow
	// also needs CAP_SYS_RESOURCE, which some sandboxes withhold); the
	// operation lock of the failed resize is gone, or this would be busy.
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v\n%s", err, out)
	}
	h.must(t, 200, "POST", "/v1/volumes/p/g/resize", `{"size":"24MB"}`)
	if got := ext4Bytes(t, image); got != 24<<20 {
		t.Errorf("filesystem after the same resize again: %d bytes, want %d", got, 24<<20)
	}
}
