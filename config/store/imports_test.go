package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// etcdRev is the store's current etcd revision.
func etcdRev(t *testing.T, s *Store) int64 {
	t.Helper()
	resp, err := s.cli.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func revisions(t *testing.T, docs ...string) config.PolicyImport {
	t.Helper()
	var in config.PolicyImport
	for i, d := range docs {
		in.Revisions = append(in.Revisions, config.ImportedRevision{
			Time: time.Unix(1796284817+int64(i), 0).UTC(), Policy: policy(t, "p", d)})
	}
	return in
}

func TestImportPolicy(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	in := revisions(t, `{"backend":"ceph","create":{"size":"10MB"}}`, `{"backend":"ceph","create":{"size":"20MB"}}`)

	before := etcdRev(t, s)
	if a, _, err := s.ImportPolicy(ctx, "p", in, true); err != nil || a != config.ImportCreated {
		t.Fatalf("dry run: %q %v", a, err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("a dry run wrote")
	}
	if a, rev, err := s.ImportPolicy(ctx, "p", in, false); err != nil || a != config.ImportCreated || rev == 0 {
		t.Fatalf("import: %q %d %v", a, rev, err)
	}
	revs, err := s.PolicyRevisions(ctx, "p")
	if err != nil || len(revs) != 2 || revs[0].Revision != 1 || !revs[1].Time.Equal(in.Revisions[1].Time) {
		t.Fatalf("revisions %+v %v", revs, err)
	}
	cur, err := s.GetPolicy(ctx, "p")
	if err != nil || cur.Revision != 2 || cur.Policy.Create.Size != "20MB" {
		t.Fatalf("current %+v %v", cur, err)
	}
	// Again: nothing written.
	before = etcdRev(t, s)
	if a, _, err := s.ImportPolicy(ctx, "p", in, false); err != nil || a != config.ImportUnchanged {
		t.Fatalf("second import: %q %v", a, err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("the second import wrote")
	}
	// An upload here afterwards numbers on from the imported head.
	rec, _, err := s.PutPolicy(ctx, policy(t, "p", `{"backend":"ceph","create":{"size":"30MB"}}`), time.Now())
	if err != nil || rec.Revision != 3 {
		t.Fatalf("upload after the import: %+v %v", rec, err)
	}
	if a, _, err := s.ImportPolicy(ctx, "p", in, false); err != nil || a != config.ImportUnchanged {
		t.Fatalf("import after an upload: %q %v", a, err)
	}
	// Another policy of that name: refused, nothing written.
	other := revisions(t, `{"backend":"local","create":{"size":"10MB"}}`)
	if _, _, err := s.PutPolicy(ctx, policy(t, "q", `{"backend":"local","create":{"size":"1MB"}}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	before = etcdRev(t, s)
	if _, _, err := s.ImportPolicy(ctx, "q", other, false); !errors.Is(err, config.ErrExists) {
		t.Fatalf("import over another policy: %v", err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("a refused import wrote")
	}
}

// A history longer than one transaction may hold goes in several, the head
// last; a deleted policy's history has no current version.
func TestImportPolicyLongHistory(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	docs := make([]string, importChunk+20)
	for i := range docs {
		docs[i] = `{"backend":"ceph","create":{"size":"10MB"}}`
	}
	in := revisions(t, docs...)
	in.Deleted = true
	if a, _, err := s.ImportPolicy(ctx, "p", in, false); err != nil || a != config.ImportCreated {
		t.Fatalf("import: %q %v", a, err)
	}
	revs, err := s.PolicyRevisions(ctx, "p")
	if err != nil || len(revs) != len(docs) {
		t.Fatalf("%d revisions, %v", len(revs), err)
	}
	if _, err := s.GetPolicy(ctx, "p"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("a deleted policy's current version: %v", err)
	}
	n, _, err := s.lastRevision(ctx, "p", false)
	if err != nil || n != int64(len(docs)) {
		t.Fatalf("head %d %v", n, err)
	}
}

func TestImportGlobal(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	g := config.Global{TTL: 30, Timeout: 10, Debug: true, MountPath: "/mnt/ceph"}
	if a, _, _, err := s.ImportGlobal(ctx, g, true); err != nil || a != config.ImportCreated {
		t.Fatalf("dry run: %q %v", a, err)
	}
	if got, _ := s.GetGlobal(ctx); got == g {
		t.Fatal("a dry run wrote")
	}
	if a, _, _, err := s.ImportGlobal(ctx, g, false); err != nil || a != config.ImportCreated {
		t.Fatalf("import: %q %v", a, err)
	}
	if got, _ := s.GetGlobal(ctx); got != g {
		t.Fatalf("global %+v", got)
	}
	if a, _, _, err := s.ImportGlobal(ctx, g, false); err != nil || a != config.ImportUnchanged {
		t.Fatalf("again: %q %v", a, err)
	}
	mine := config.Global{TTL: 5, Timeout: 1, MountPath: "/mnt/x"}
	if _, err := s.PutGlobal(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if a, kept, _, err := s.ImportGlobal(ctx, g, false); err != nil || a != config.ImportKept || kept != mine {
		t.Fatalf("over another: %q %+v %v", a, kept, err)
	}
}

func importedVolume(name string) config.Volume {
	return config.Volume{
		Policy: "p", Name: name, Image: "p." + name,
		CreatedAt: time.Now().UTC(), FormattedAt: time.Now().UTC(),
		Backends:    config.Backends{CRUD: "ceph", Mount: "ceph", Snapshot: "ceph"},
		Driver:      config.Driver{Pool: "rbd"},
		Create:      config.CreateOptions{Size: "10MB", Filesystem: "ext4"},
		FileSystems: config.DefaultFilesystems(),
		Runtime:     config.RuntimeOptions{Snapshots: true, Snapshot: config.SnapshotConfig{Frequency: config.Duration(time.Minute), Keep: 15}},
	}
}

func adopted(orig string, at time.Time) config.Snapshot {
	return config.Snapshot{Name: config.SnapshotName(at), Time: at, Backend: orig, By: "test", Method: "native"}
}

func TestImportVolume(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	v := importedVolume("pgdata")
	t1 := time.Date(2017, 6, 1, 10, 0, 0, 123456789, time.UTC)
	snaps := []config.Snapshot{
		adopted("2017-06-01 10:00:00.123456789 +0000 UTC", t1),
		// Same millisecond: its record name moves on by one.
		adopted("2017-06-01 10:00:00.1234 +0000 UTC", t1),
	}
	before := etcdRev(t, s)
	if a, got, _, err := s.ImportVolume(ctx, v, snaps, true); err != nil || a != config.ImportCreated || len(got) != 2 {
		t.Fatalf("dry run: %q %+v %v", a, got, err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("a dry run wrote")
	}
	a, got, _, err := s.ImportVolume(ctx, v, snaps, false)
	if err != nil || a != config.ImportCreated || len(got) != 2 || got[0].Name == got[1].Name {
		t.Fatalf("import: %q %+v %v", a, got, err)
	}
	stored, err := s.GetVolume(ctx, v.Ref())
	if err != nil || stored.Image != "p.pgdata" || !stored.Formatted() || stored.Runtime.Snapshot.Keep != 15 {
		t.Fatalf("stored %+v %v", stored, err)
	}
	list, err := s.ListSnapshots(ctx, v.Ref())
	if err != nil || len(list) != 2 || list[0].BackendName() != snaps[0].Backend {
		t.Fatalf("snapshots %+v %v", list, err)
	}
	before = etcdRev(t, s)
	if a, got, _, err := s.ImportVolume(ctx, v, snaps, false); err != nil || a != config.ImportUnchanged || len(got) != 0 {
		t.Fatalf("again: %q %+v %v", a, got, err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("the second import wrote")
	}
	// A snapshot taken since (the original still running) is adopted.
	later := adopted("2017-06-02 10:00:00 +0000 UTC", t1.Add(24*time.Hour))
	if a, got, _, err := s.ImportVolume(ctx, v, append(snaps, later), false); err != nil || a != config.ImportUnchanged || len(got) != 1 {
		t.Fatalf("new snapshot: %q %+v %v", a, got, err)
	}
	// A volume of that name with another image: refused.
	other := v
	other.Image = ""
	if _, _, _, err := s.ImportVolume(ctx, other, nil, false); !errors.Is(err, config.ErrExists) {
		t.Fatalf("over another volume: %v", err)
	}
	// Bad records are refused before anything is read.
	bad := importedVolume("bad")
	bad.Image = "p/../x"
	if _, _, _, err := s.ImportVolume(ctx, bad, nil, false); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("bad image name: %v", err)
	}
	busy := importedVolume("busy")
	if _, err := s.cli.Put(ctx, s.keys.OpLock(busy.Ref()), "{}"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.ImportVolume(ctx, busy, nil, false); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("volume with an operation lock: %v", err)
	}
	if _, err := s.cli.Delete(ctx, s.keys.OpLock(busy.Ref()), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

// Two volumes never share an image: only the original's own name for a
// volume is adopted, and a second volume whose original name is the same
// image ("a.b"/"c" and "a"/"b.c" are both a.b.c) is refused.
func TestImportVolumeImageOwnedOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	first := importedVolume("x")
	first.Policy, first.Name, first.Image = "a.b", "c", "a.b.c"
	if _, _, _, err := s.ImportVolume(ctx, first, nil, false); err != nil {
		t.Fatal(err)
	}
	second := importedVolume("x")
	second.Policy, second.Name, second.Image = "a", "b.c", "a.b.c"
	before := etcdRev(t, s)
	if _, _, _, err := s.ImportVolume(ctx, second, nil, false); !errors.Is(err, config.ErrExists) || !strings.Contains(err.Error(), "a.b/c") {
		t.Fatalf("a second volume on image a.b.c: %v, want ErrExists naming a.b/c", err)
	}
	if etcdRev(t, s) != before {
		t.Fatal("the refused import wrote")
	}
	other := importedVolume("y")
	other.Image = "p.x" // another volume's original name
	if _, _, _, err := s.ImportVolume(ctx, other, nil, false); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("volume p/y adopting image p.x: %v, want ErrInvalid", err)
	}
}
