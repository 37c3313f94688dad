package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

// layout reads a key layout kept in testdata as a tree of files: the path
// under dir is the key under the prefix, the content (less one trailing
// newline) the value. testdata/schema1 is what a schema-1 volmaster wrote
// (policies uploaded, deleted and uploaded again, volumes, a snapshot record,
// usage, a token); testdata/schema2 is the same etcd after the migration.
func layout(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = strings.TrimSuffix(string(b), "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no keys in %s", dir)
	}
	return out
}

// rawStore returns a store on a fresh etcd holding kv (keys relative to the
// prefix), written with plain puts as an older volmaster wrote them; Init
// has not run.
func rawStore(t *testing.T, cli *clientv3.Client, kv map[string]string) *Store {
	t.Helper()
	if cli == nil {
		cli, _ = etcdtest.Start(t)
	}
	keys, _ := config.NewKeys("/test")
	s := New(cli, keys, 5*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for k, v := range kv {
		if _, err := cli.Put(ctx, keys.All()+k, v); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// dump returns every key under the prefix, relative to it, and the etcd
// revision it was read at.
func dump(t *testing.T, s *Store) (map[string]string, int64) {
	t.Helper()
	resp, err := s.get(t.Context(), "dump", s.keys.All(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.keys.All())] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

// sameLayout fails with the keys that differ.
func sameLayout(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: key %s missing, want %s", what, k, want[k])
		} else if g != want[k] {
			t.Errorf("%s: key %s = %s, want %s", what, k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected key %s = %s", what, k, got[k])
		}
	}
}

// uploadV1 writes a policy revision the way a schema-1 volmaster did:
// revision key and current policy, no head.
func uploadV1(ctx context.Context, s *Store, name string, rev int64) error {
	b, err := json.Marshal(PolicyRecord{Revision: rev, Time: time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC),
		Policy: config.Policy{Name: name, Backends: config.Backends{CRUD: "local", Mount: "local", Snapshot: "local"}}})
	if err != nil {
		return err
	}
	_, err = s.cli.Txn(ctx).Then(clientv3.OpPut(s.keys.PolicyRevision(name, rev), string(b)), clientv3.OpPut(s.keys.Policy(name), string(b))).Commit()
	return err
}

func TestMigrateSchema1(t *testing.T) {
	s := rawStore(t, nil, layout(t, "testdata/schema1"))
	ctx := t.Context()
	done, err := s.Upgrade(ctx)
	if err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	if len(done) != 1 || done[0].From != 1 || done[0].To != 2 || done[0].Ops != 5 ||
		done[0].Summary != "4 policy heads: db=3 old=2 reup=2 scratch=1" {
		t.Errorf("Upgrade reported %+v, want one step 1→2 of 5 ops (4 heads + schema)", done)
	}
	want := layout(t, "testdata/schema2")
	got, rev := dump(t, s)
	sameLayout(t, "after the migration", got, want)
	if got["schema"] != "2" {
		t.Errorf("schema = %q, want 2", got["schema"])
	}

	// A second Init, as every volmaster start does, changes nothing.
	done, err = s.Upgrade(ctx)
	if err != nil || len(done) != 0 {
		t.Fatalf("second Upgrade = %+v, %v; want a no-op", done, err)
	}
	again, rev2 := dump(t, s)
	sameLayout(t, "after a second Init", again, want)
	if rev2 != rev {
		t.Errorf("second Init moved etcd from revision %d to %d", rev, rev2)
	}

	// Uploads number on from the heads, also for a deleted policy.
	for name, wantRev := range map[string]int64{"db": 4, "old": 3, "new": 1} {
		rec, _, err := s.PutPolicy(ctx, policy(t, name, `{"backend":"local","create":{"size":"10MB"}}`), time.Now())
		if err != nil || rec.Revision != wantRev {
			t.Errorf("upload %s after the migration = revision %d, %v; want %d", name, rec.Revision, err, wantRev)
		}
	}
	after, _ := dump(t, s)
	for name, head := range map[string]string{"db": `{"revision":4}`, "old": `{"revision":3}`, "new": `{"revision":1}`, "reup": `{"revision":2}`} {
		if got := after["policy-heads/"+name]; got != head {
			t.Errorf("head of %s = %s, want %s", name, got, head)
		}
	}
}

// A change to what the migration read, made between its read and its
// commit, makes the transaction fail; if that keeps happening Upgrade gives
// up and etcd holds the schema-1 layout plus that writer's changes, nothing
// of the migration.
func TestMigrateConflictChangesNothing(t *testing.T) {
	fixture := layout(t, "testdata/schema1")
	s := rawStore(t, nil, fixture)
	calls := 0
	s.faultBeforeMigrationCommit = func(ctx context.Context) {
		calls++
		if err := uploadV1(ctx, s, "db", int64(3+calls)); err != nil {
			t.Error(err)
		}
	}
	_, err := s.Upgrade(t.Context())
	if !errors.Is(err, config.ErrInUse) || !strings.Contains(err.Error(), "changed during the migration") {
		t.Fatalf("Upgrade with a writer in every window = %v, want ErrInUse", err)
	}
	if calls != maxMigrationConflicts {
		t.Errorf("migration planned %d times, want %d", calls, maxMigrationConflicts)
	}
	got, _ := dump(t, s)
	want := maps.Clone(fixture)
	for rev := int64(4); rev < int64(4+calls); rev++ {
		k := strings.TrimPrefix(s.keys.PolicyRevision("db", rev), s.keys.All())
		want[k] = got[k]
		want["policies/db"] = got[k]
	}
	sameLayout(t, "after the failed migration", got, want)
}

// One concurrent upload (an old volmaster still running) costs one retry,
// and the head counts it.
func TestMigrateRetriesAfterConcurrentUpload(t *testing.T) {
	s := rawStore(t, nil, layout(t, "testdata/schema1"))
	calls := 0
	s.faultBeforeMigrationCommit = func(ctx context.Context) {
		calls++
		if calls == 1 {
			if err := uploadV1(ctx, s, "db", 4); err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := s.Upgrade(t.Context()); err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	if calls != 2 {
		t.Errorf("migration planned %d times, want 2", calls)
	}
	got, _ := dump(t, s)
	if got["policy-heads/db"] != `{"revision":4}` || got["schema"] != "2" {
		t.Errorf("head of db = %s, schema %s; want revision 4 (the concurrent upload), schema 2", got["policy-heads/db"], got["schema"])
	}
}

// Two new volmasters starting together: one migrates, the other finds the
// work done; the result is the same as one alone.
func TestMigrateTwoVolmastersAtOnce(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	a := rawStore(t, cli, layout(t, "testdata/schema1"))
	b := New(cli, a.keys, 5*time.Second)
	var wg sync.WaitGroup
	steps := make([]int, 2)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := s.Upgrade(t.Context())
			if err != nil {
				t.Errorf("volmaster %d: %v", i, err)
			}
			steps[i] = len(done)
		}()
	}
	wg.Wait()
	if steps[0]+steps[1] != 1 {
		t.Errorf("steps committed = %v, want one in all", steps)
	}
	got, _ := dump(t, a)
	sameLayout(t, "after two concurrent migrations", got, layout(t, "testdata/schema2"))
}

// A migration larger than etcd's --max-txn-ops is refused by etcd as a
// whole: the error says what to do and etcd is unchanged.
func TestMigrateTooLargeForOneTransaction(t *testing.T) {
	fixture := layout(t, "testdata/schema1")
	cli, _ := etcdtest.StartWith(t, etcdtest.Options{MaxTxnOps: 4}) // the fixture needs 5
	s := rawStore(t, cli, fixture)
	_, err := s.Upgrade(t.Context())
	if !errors.Is(err, config.ErrSchema) || !errors.Is(err, rpctypes.ErrTooManyOps) ||
		!strings.Contains(err.Error(), "--max-txn-ops=5") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("Upgrade = %v, want ErrSchema + ErrTooManyOps asking for --max-txn-ops=5", err)
	}
	got, _ := dump(t, s)
	sameLayout(t, "after the refused migration", got, fixture)
}

func TestInitRefusesNewerOrUnknownSchema(t *testing.T) {
	for _, v := range []string{"3", "99", "banana", "", "0", "-1", "02", "+2", " 2", "2\n", "1.5"} {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			fixture := map[string]string{"schema": v, "policies/p": `{"revision":1}`}
			s := rawStore(t, nil, fixture)
			err := s.Init(t.Context())
			if !errors.Is(err, config.ErrSchema) || !strings.Contains(err.Error(), fmt.Sprintf("%q", v)) {
				t.Fatalf("Init on schema %q = %v, want ErrSchema naming the value", v, err)
			}
			if v == "3" && !strings.Contains(err.Error(), "newer than this build's 2: upgrade volmaster") {
				t.Errorf("Init on schema 3 = %v, want it to say upgrade volmaster", err)
			}
			got, _ := dump(t, s)
			sameLayout(t, "after the refusal", got, fixture)
		})
	}
}

func TestInitEmptyPrefixWritesCurrentSchema(t *testing.T) {
	s := rawStore(t, nil, nil)
	done, err := s.Upgrade(t.Context())
	if err != nil || len(done) != 0 {
		t.Fatalf("Upgrade of an empty prefix = %+v, %v", done, err)
	}
	got, _ := dump(t, s)
	sameLayout(t, "fresh prefix", got, map[string]string{"schema": "2"})
}

// A schema-1 volmaster still running after the migration uploads without
// moving the head; the next upload notices the number is taken and takes
// the next free one from the history.
func TestPutPolicyAfterSchema1Writer(t *testing.T) {
	s := rawStore(t, nil, layout(t, "testdata/schema1"))
	ctx := t.Context()
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := uploadV1(ctx, s, "db", 4); err != nil {
		t.Fatal(err)
	}
	if err := uploadV1(ctx, s, "v1only", 1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"db": 5, "v1only": 2} {
		rec, _, err := s.PutPolicy(ctx, policy(t, name, `{"backend":"local","create":{"size":"10MB"}}`), time.Now())
		if err != nil || rec.Revision != want {
			t.Errorf("upload %s = revision %d, %v; want %d", name, rec.Revision, err, want)
		}
	}
}

// volsupervisor does not migrate: it runs on an empty prefix or the current
// schema, and refuses an older one (volmaster must migrate it first) or a
// newer one, writing nothing.
func TestCheckSchema(t *testing.T) {
	for _, c := range []struct{ schema, want string }{
		{"", ""}, {"2", ""}, {"1", "start the new volmaster first"}, {"3", "upgrade this daemon"}, {"x", "not a schema version"},
	} {
		fixture := map[string]string{"policies/p": `{"revision":1}`}
		if c.schema != "" {
			fixture["schema"] = c.schema
		}
		s := rawStore(t, nil, fixture)
		err := s.CheckSchema(t.Context())
		if c.want == "" && err != nil {
			t.Errorf("schema %q: %v", c.schema, err)
		}
		if c.want != "" && (!errors.Is(err, config.ErrSchema) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("schema %q: %v, want ErrSchema with %q", c.schema, err, c.want)
		}
		got, _ := dump(t, s)
		sameLayout(t, "after CheckSchema", got, fixture)
	}
}
