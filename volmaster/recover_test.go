package volmaster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/config/store"
	"github.com/volplugin/volplugin/lock"
	"github.com/volplugin/volplugin/storage"
	"github.com/volplugin/volplugin/storage/backend/local"
)

// Operations whose holder died half-way (its lease revoked, as a kill -9
// of volmaster leaves them once the lease expires) are recovered by the
// running volmaster: finished or undone, so no record is left without an
// image, no image or snapshot without a record, and nothing stays locked.
// While the holder's lease lives nothing is touched; until an operation is
// recovered no mount lock is granted on its volume.
func TestRecoverInterrupted(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	for _, n := range []string{"rm-gone", "rm-there", "rm-trashed", "snap", "grow", "restored"} {
		h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"`+n+`"}`)
	}
	h.must(t, 200, "DELETE", "/v1/volumes/p/restored", "") // to the trash
	ctx := t.Context()
	st := h.srv.Store()
	lb, err := local.New(local.Config{DataDir: h.dataDir, MountRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.Client().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	dead := store.Holder{Lease: l.ID, Owner: "volmaster that dies"}
	ref := func(n string) config.VolumeRef { return config.VolumeRef{Policy: "p", Name: n} }
	image := func(n string) string { return filepath.Join(h.dataDir, "images", "p", n+".img") }
	sv := func(n string) storage.Volume {
		v, err := st.GetVolume(ctx, ref(n))
		if err != nil {
			t.Fatal(err)
		}
		s, err := storage.FromConfig(&v)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pol, err := st.GetPolicy(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}

	// The steps each operation got to.
	for _, n := range []string{"new-bare", "new-made", "copied"} {
		v, err := config.NewVolume(ref(n), pol.Policy, pol.Revision, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		from := ""
		if n == "copied" {
			from = "p/snap@20250101T000000.000Z"
		}
		if _, err := st.CreateVolumeFrom(ctx, v, dead, config.Limits{}, from); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"new-made", "copied"} {
		if err := lb.Create(ctx, sv(n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"rm-gone", "rm-there", "rm-trashed"} {
		if _, err := st.BeginRemove(ctx, ref(n), dead, 0); err != nil {
			t.Fatal(err)
		}
	}
	handle, err := lb.Trash(ctx, sv("rm-trashed"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetIntentHandle(ctx, ref("rm-trashed"), dead, handle); err != nil {
		t.Fatal(err)
	}
	if err := lb.Destroy(ctx, sv("rm-gone")); err != nil {
		t.Fatal(err)
	}
	trashed, err := st.ListTrash(ctx, ref("restored"))
	if err != nil || len(trashed) != 1 {
		t.Fatalf("trash of p/restored: %v, %v", trashed, err)
	}
	if _, err := st.BeginRestore(ctx, config.TrashRef{Volume: ref("restored"), ID: trashed[0].ID}, dead, time.Now()); err != nil {
		t.Fatal(err)
	}
	const snap = "20260101T000000.000Z"
	if _, err := st.BeginIntent(ctx, ref("snap"), store.Intent{Op: "snapshot", Snapshot: snap}, dead); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.CreateSnapshot(ctx, sv("snap"), snap); err != nil {
		t.Fatal(err)
	}
	if _, err := st.BeginIntent(ctx, ref("grow"), store.Intent{Op: "resize", Size: "20MB"}, dead); err != nil {
		t.Fatal(err)
	}

	// A mount waits for the operation, and then for its recovery.
	locks := lock.New(st.Client(), st.Keys(), 5*time.Second)
	hl, err := locks.Grant(ctx, "h1", "", 60)
	if err != nil {
		t.Fatal(err)
	}
	mount := func(n string) error {
		_, err := locks.Acquire(ctx, ref(n), config.MountRequest{Hostname: "h1", Lease: hl.ID, MountID: "m"})
		return err
	}
	if err := mount("rm-there"); !errors.Is(err, config.ErrBusy) {
		t.Fatalf("mount during a remove = %v, want busy", err)
	}
	// The read cache sees the intents: volmaster looks into etcd only then.
	for deadline := time.Now().Add(10 * time.Second); h.srv.cache.Intents() != 9; {
		if time.Now().After(deadline) {
			t.Fatalf("the cache sees %d intents, want 9", h.srv.cache.Intents())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	// Alive: nothing is recovered.
	if n, err := h.srv.RecoverInterrupted(ctx); n != 0 || err != nil {
		t.Fatalf("RecoverInterrupted with the holder alive = %d, %v", n, err)
	}
	// Dead: its locks go with its lease, the intents stay until recovered.
	if _, err := st.Client().Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		its, err := st.ListInterrupted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := h.srv.Store().Dump(ctx)
		left := 0
		for k := range d {
			if strings.HasPrefix(k, st.Keys().Intents()) || strings.HasPrefix(k, st.Keys().OpLocks()) {
				left++
			}
		}
		if len(its) == 0 && left == 0 && h.srv.cache.Intents() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered after 20s: %+v", its)
		}
		time.Sleep(50 * time.Millisecond) // polling interval: the recovery loop runs every second
	}

	exists := func(n string) bool { _, err := os.Stat(image(n)); return err == nil }
	record := func(n string) bool { _, err := st.GetVolume(ctx, ref(n)); return err == nil }
	for _, c := range []struct {
		name          string
		record, image bool
	}{
		{"new-bare", false, false}, // create undone: no image was made
		{"new-made", true, true},   // create finished: the image was made
		{"copied", false, false},   // copy undone: its image may be partial
		{"rm-gone", false, false},  // remove finished: the image was gone
		{"rm-there", true, true},   // remove undone: the image is there
		{"rm-trashed", true, true}, // remove undone: the image taken back from the trash
		{"restored", true, true},   // restore finished: the image taken back from the trash
		{"snap", true, true},
		{"grow", true, true},
	} {
		if record(c.name) != c.record || exists(c.name) != c.image {
			t.Errorf("%s: record %v image %v, want %v %v", c.name, record(c.name), exists(c.name), c.record, c.image)
		}
	}
	if snaps, err := lb.ListSnapshots(ctx, sv("snap")); err != nil || len(snaps) != 0 {
		t.Errorf("snapshot without a record left: %v, %v", snaps, err)
	}
	if v, err := st.GetVolume(ctx, ref("grow")); err != nil || v.Create.Size != "20MB" {
		t.Errorf("resize cut short: record %q, %v; want it finished at 20MB", v.Create.Size, err)
	}
	if fi, err := os.Stat(image("grow")); err != nil || fi.Size() != 20<<20 {
		t.Errorf("resize cut short: image %v, %v", fi, err)
	}
	for _, n := range []string{"new-made", "rm-there", "rm-trashed", "restored", "grow"} {
		if err := mount(n); err != nil {
			t.Errorf("mount of %s after the recovery: %v", n, err)
		}
	}
}
