package volops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/storage"
)

// writeFile mounts ref's volume (real loop device, real mkfs and mount),
// writes name with data and unmounts it again; read does the reverse.
func (e *env) writeFile(t *testing.T, ref config.VolumeRef, name, data string) {
	t.Helper()
	e.withMount(t, ref, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	})
}

func (e *env) readFile(t *testing.T, ref config.VolumeRef, name string) string {
	t.Helper()
	var out []byte
	e.withMount(t, ref, func(dir string) {
		var err error
		if out, err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	})
	return string(out)
}

func (e *env) withMount(t *testing.T, ref config.VolumeRef, f func(dir string)) {
	t.Helper()
	ctx := context.Background()
	v, err := e.st.GetVolume(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := storage.FromConfig(&v)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.lb.Mount(ctx, sv)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.lb.Unmount(ctx, sv); err != nil {
			t.Fatal(err)
		}
	}()
	f(m.Path)
}

func (e *env) imageExists(t *testing.T, ref config.VolumeRef) bool {
	t.Helper()
	ok, err := e.lb.Exists(context.Background(), storage.Volume{Policy: ref.Policy, Name: ref.Name})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A removed volume goes to the trash with its data, snapshots and records;
// its name is free at once, a restore is refused while the name is taken,
// and once it is free the volume comes back exactly, data included.
func TestTrashRestoreKeepsData(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ref := e.volume(t, "v", `,"trash":{"retention":"2h"}`)
	host, err := e.locks.Grant(ctx, "node7", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	req := config.MountRequest{Hostname: "node7", Lease: host.ID, MountID: "m"}
	if _, err := e.locks.Acquire(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	e.writeFile(t, ref, "f", "kept")
	if _, err := e.locks.Release(ctx, ref, req); err != nil {
		t.Fatal(err)
	}
	e.ops.Backends = map[string]storage.Snapshotter{config.BackendLocal: e.lb}
	if _, err := e.ops.Take(ctx, ref, e.h); err != nil {
		t.Fatal(err)
	}
	e.ops.By = "tester"
	first, err := e.ops.Discard(ctx, ref, Manual, e.h)
	if err != nil || first.Trash == nil {
		t.Fatalf("remove = %+v, %v; want a trash entry", first, err)
	}
	if got := first.Trash.Expires.Sub(first.Trash.RemovedAt); got != 2*time.Hour || first.Trash.RemovedBy != "tester" ||
		len(first.Trash.Snapshots) != 1 || first.Trash.Handle == "" {
		t.Errorf("trash entry %+v: want 2h retention, by tester, 1 snapshot, a handle", first.Trash)
	}
	if e.exists(t, ref) || e.imageExists(t, ref) {
		t.Fatal("volume record or image left under the name")
	}
	d, _ := e.st.Dump(ctx)
	for k := range d {
		if strings.Contains(k, "/p/v") && !strings.HasPrefix(k, e.st.Keys().AllTrash()) {
			t.Errorf("key %s left beside the trash entry", k)
		}
	}

	// The name is free: a new volume, with nothing of the old one.
	e.volume(t, "v", "")
	if snaps, _ := e.st.ListSnapshots(ctx, ref); len(snaps) != 0 {
		t.Errorf("new volume inherited snapshots %v", snaps)
	}
	tref1 := config.TrashRef{Volume: ref, ID: first.Trash.ID}
	if _, _, err := e.ops.Restore(ctx, tref1, e.h); !errors.Is(err, config.ErrExists) || !strings.Contains(err.Error(), "volcli volume remove p/v") {
		t.Fatalf("restore over a live volume = %v", err)
	}
	second, err := e.ops.Discard(ctx, ref, Manual, e.h)
	if err != nil || second.Trash == nil || second.Trash.ID == first.Trash.ID {
		t.Fatalf("second remove = %+v, %v", second, err)
	}

	v, _, err := e.ops.Restore(ctx, tref1, e.h)
	if err != nil {
		t.Fatal(err)
	}
	if !v.CreatedAt.Equal(first.Trash.Volume.CreatedAt) || v.RestoredAt.IsZero() {
		t.Errorf("restored %+v, want created %s", v, first.Trash.Volume.CreatedAt)
	}
	if got := e.readFile(t, ref, "f"); got != "kept" {
		t.Errorf("restored data %q, want kept", got)
	}
	if snaps, _ := e.st.ListSnapshots(ctx, ref); len(snaps) != 1 {
		t.Errorf("restored snapshots %v, want 1", snaps)
	}
	if u, _, _ := e.st.GetUsage(ctx, ref); u == nil || u.LastUnmounted.IsZero() {
		t.Errorf("restored usage %+v, want the recorded unmount", u)
	}
	if d, _ := e.st.Dump(ctx); d[e.st.Keys().OpLock(ref)] != "" {
		t.Error("restore left its operation lock")
	}

	tref2 := config.TrashRef{Volume: ref, ID: second.Trash.ID}
	if _, err := e.ops.Purge(ctx, tref2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Purge(ctx, tref2); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("second purge = %v, want not found", err)
	}
	if left, _ := e.st.ListTrash(ctx, config.VolumeRef{}); len(left) != 0 {
		t.Errorf("trash after restore and purge: %+v", left)
	}
}

// faulty wraps the local backend: after its Trash it deletes the leader
// key (leadership lost while the image moved), and its Restore fails when
// failRestore is set.
type faulty struct {
	storage.CRUD
	trasher     storage.Trasher
	afterTrash  func()
	failRestore bool
}

func (f *faulty) Trash(ctx context.Context, v storage.Volume, keep time.Duration) (string, error) {
	h, err := f.trasher.Trash(ctx, v, keep)
	if err == nil && f.afterTrash != nil {
		f.afterTrash()
	}
	return h, err
}

func (f *faulty) Restore(ctx context.Context, v storage.Volume, handle string) error {
	if f.failRestore {
		return errors.New("injected restore failure")
	}
	return f.trasher.Restore(ctx, v, handle)
}

func (f *faulty) Purge(ctx context.Context, v storage.Volume, handle string) error {
	return f.trasher.Purge(ctx, v, handle)
}

// A removal whose records cannot follow the image into the trash puts the
// image back (no image without a record); a restore whose image cannot come
// back puts the records back into the trash (no record without an image).
func TestTrashRollsBack(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ref := e.volume(t, "v", "")
	cli := e.st.Client()
	const leader = "/test/leader"
	if _, err := cli.Put(ctx, leader, "me"); err != nil {
		t.Fatal(err)
	}
	guard := clientv3.Compare(clientv3.CreateRevision(leader), ">", 0)
	f := &faulty{CRUD: e.lb, trasher: e.lb, afterTrash: func() {
		if _, err := cli.Delete(ctx, leader); err != nil {
			t.Error(err)
		}
	}}
	ops := *e.ops
	ops.CRUD = map[string]storage.CRUD{config.BackendLocal: f}
	if _, err := ops.Discard(ctx, ref, Collect(0), e.h, guard); err == nil {
		t.Fatal("collect of a volume that is neither ephemeral nor reclaimable went ahead")
	}
	if _, err := ops.Discard(ctx, ref, Manual, e.h, guard); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("remove losing the guard = %v, want not leader", err)
	}
	if !e.exists(t, ref) || !e.imageExists(t, ref) {
		t.Fatal("record or image gone after a failed move to the trash")
	}
	if d, _ := e.st.Dump(ctx); d[e.st.Keys().OpLock(ref)] != "" || len(d) == 0 {
		t.Error("failed remove left its operation lock")
	}
	if left, _ := e.st.ListTrash(ctx, config.VolumeRef{}); len(left) != 0 {
		t.Errorf("trash entry without its image: %+v", left)
	}

	f.afterTrash = nil
	res, err := ops.Discard(ctx, ref, Manual, e.h)
	if err != nil {
		t.Fatal(err)
	}
	f.failRestore = true
	tref := config.TrashRef{Volume: ref, ID: res.Trash.ID}
	if _, _, err := ops.Restore(ctx, tref, e.h); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("restore with a failing backend = %v", err)
	}
	if e.exists(t, ref) {
		t.Error("record restored without its image")
	}
	if back, _, err := e.st.GetTrash(ctx, tref); err != nil || back.Purging || !back.Volume.RestoredAt.IsZero() {
		t.Fatalf("trash entry after the failed restore = %+v, %v", back, err)
	}
	f.failRestore = false
	if _, _, err := ops.Restore(ctx, tref, e.h); err != nil {
		t.Fatal(err)
	}
	if !e.exists(t, ref) || !e.imageExists(t, ref) {
		t.Error("restore after the failure did not bring record and image back")
	}
}

// Expired entries are purged, image and entry; others stay. An entry
// marked purging cannot be restored.
func TestPurgeExpired(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, n := range []string{"old", "new"} {
		ref := e.volume(t, n, `,"trash":{"retention":"1h"}`)
		if _, err := e.ops.Discard(ctx, ref, Manual, e.h); err != nil {
			t.Fatal(err)
		}
		if n == "old" {
			// Removed 2h ago as far as the next removal knows.
			e.ops.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
			defer func() { e.ops.Now = time.Now }()
		}
	}
	e.ops.Now = func() time.Time { return time.Now().Add(90 * time.Minute) }
	done, err := e.ops.PurgeExpired(ctx)
	if err != nil || len(done) != 1 || done[0].Volume.Name != "old" {
		t.Fatalf("purged %v, %v; want p/old only", done, err)
	}
	left, _ := e.st.ListTrash(ctx, config.VolumeRef{})
	if len(left) != 1 || left[0].Volume.Name != "new" {
		t.Fatalf("left %+v", left)
	}
	tref := config.TrashRef{Volume: left[0].Ref(), ID: left[0].ID}
	if _, err := e.st.BeginPurge(ctx, tref); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ops.Restore(ctx, tref, e.h); !errors.Is(err, config.ErrBusy) || !strings.Contains(err.Error(), "volcli volume trash purge") {
		t.Fatalf("restore of an entry being purged = %v", err)
	}
	if _, err := e.ops.Purge(ctx, tref); err != nil {
		t.Fatalf("purge finishing a started one: %v", err)
	}
}

// A protected volume is kept by every removal but the one that names it.
func TestProtectedRemoval(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ref := e.volume(t, "v", `,"protect":true,"reclaim":{"unused-for":"1ns","enabled":true}`)
	for name, check := range map[string]RemoveCheck{"manual": Manual, "collect": Collect(0)} {
		if _, err := e.ops.Remove(ctx, ref, check, e.h); !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "protect") {
			t.Errorf("%s remove of a protected volume = %v", name, err)
		}
	}
	if _, err := e.ops.Remove(ctx, ref, Manual, e.h); !errors.Is(err, config.ErrProtected) ||
		!strings.Contains(err.Error(), "volcli volume remove --unprotect p/v") {
		t.Errorf("manual remove = %v, want the volcli command", err)
	}
	if _, err := e.ops.Remove(ctx, ref, Unprotect, e.h); err != nil {
		t.Fatal(err)
	}
}
