package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// A schema migration upgrades the key layout from one version to the next.
// Each one runs as ONE etcd transaction that also moves the schema key, so
// the schema key always names the layout the keys are in: a crash, a lost
// connection or a refused transaction leaves the old layout whole, and the
// next start tries again. The transaction compares the schema key and every
// key range the step read, so a writer that changes them in between (an old
// volmaster still running, a second new one migrating too) makes it fail
// instead of committing a plan made from stale data; Upgrade then reads again.
type migration struct {
	// from is the schema this step upgrades; it produces from+1.
	from int
	// what describes the step for the log.
	what string
	// plan reads what the step needs and returns the changes.
	plan func(ctx context.Context, s *Store) (migrationPlan, error)
}

// migrationPlan is one step's transaction body.
type migrationPlan struct {
	// cmps must still hold at commit: they guard what plan read.
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	// summary says what the ops change, for the log.
	summary string
}

// migrations is every step, in order: migrations[i].from == i+1.
var migrations = []migration{
	{from: 1, what: "write each policy's head (number of its latest revision)", plan: planPolicyHeads},
}

// Migrated reports one migration step that Upgrade committed.
type Migrated struct {
	From, To int
	What     string
	Summary  string
	// Ops is the number of changes the step's transaction made.
	Ops int
}

// maxMigrationConflicts bounds how often Upgrade starts a step again after
// its transaction found the keys changed since it read them.
const maxMigrationConflicts = 5

// Init records the schema version on first use, migrates an older layout and
// refuses a newer or unknown one. It is Upgrade without the report.
func (s *Store) Init(ctx context.Context) error {
	_, err := s.Upgrade(ctx)
	return err
}

// Upgrade brings the prefix to config.SchemaVersion: an empty prefix gets the
// current schema; an older layout is migrated step by step, each step in one
// transaction; a layout at the current schema is left alone (a no-op, so
// every volmaster start may call it). It returns the steps it committed.
// A newer or unreadable schema is refused with config.ErrSchema and nothing
// is written.
func (s *Store) Upgrade(ctx context.Context) ([]Migrated, error) {
	var done []Migrated
	conflicts := 0
	for {
		cur, modRev, err := s.schema(ctx)
		if err != nil {
			return done, err
		}
		if cur == 0 {
			ok, err := s.createSchema(ctx)
			if err != nil || ok {
				return done, err
			}
			continue // someone else wrote it first: check what they wrote
		}
		if cur == config.SchemaVersion {
			return done, nil
		}
		if cur > config.SchemaVersion {
			return done, fmt.Errorf("etcd prefix %s holds schema \"%d\", newer than this build's %d: upgrade volmaster: %w",
				s.keys.Prefix, cur, config.SchemaVersion, config.ErrSchema)
		}
		m, err := migrationFrom(cur)
		if err != nil {
			return done, err
		}
		res, committed, err := s.migrate(ctx, m, modRev)
		if err != nil {
			return done, err
		}
		if !committed {
			conflicts++
			if conflicts >= maxMigrationConflicts {
				return done, fmt.Errorf("migrate etcd schema %d to %d: the keys changed during the migration %d times; nothing of this step was written: stop old volmasters and start again: %w",
					m.from, m.from+1, conflicts, config.ErrInUse)
			}
			continue
		}
		done = append(done, res)
	}
}

// CheckSchema is for the daemons that use the layout but do not migrate it
// (volsupervisor): an absent schema (volmaster has not run yet) or the current
// one is fine; an older one must be migrated by volmaster first, a newer one
// needs this daemon upgraded.
func (s *Store) CheckSchema(ctx context.Context) error {
	cur, _, err := s.schema(ctx)
	switch {
	case err != nil:
		return err
	case cur != 0 && cur < config.SchemaVersion:
		return fmt.Errorf("etcd prefix %s holds schema \"%d\", older than this build's %d: start the new volmaster first (it migrates the layout): %w",
			s.keys.Prefix, cur, config.SchemaVersion, config.ErrSchema)
	case cur > config.SchemaVersion:
		return fmt.Errorf("etcd prefix %s holds schema \"%d\", newer than this build's %d: upgrade this daemon: %w",
			s.keys.Prefix, cur, config.SchemaVersion, config.ErrSchema)
	}
	return nil
}

func migrationFrom(v int) (migration, error) {
	i := slices.IndexFunc(migrations, func(m migration) bool { return m.from == v })
	if i < 0 {
		return migration{}, fmt.Errorf("no migration from etcd schema %d to %d: %w", v, config.SchemaVersion, config.ErrSchema)
	}
	return migrations[i], nil
}

// schema returns the stored schema version and the schema key's mod
// revision; 0, 0 if there is none. A value that is not a schema version this
// code could have written is refused.
func (s *Store) schema(ctx context.Context) (int, int64, error) {
	resp, err := s.get(ctx, "read schema", s.keys.Schema())
	if err != nil {
		return 0, 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, nil
	}
	raw := string(resp.Kvs[0].Value)
	v, err := strconv.Atoi(raw)
	// Only the canonical form: "+2", "02" or " 2" were never written by us.
	if err != nil || v < 1 || strconv.Itoa(v) != raw {
		return 0, 0, fmt.Errorf("etcd prefix %s holds schema %q, which is not a schema version (this build's is %d): %w",
			s.keys.Prefix, raw, config.SchemaVersion, config.ErrSchema)
	}
	return v, resp.Kvs[0].ModRevision, nil
}

// createSchema writes the current schema if the key is absent and reports
// whether it did.
func (s *Store) createSchema(ctx context.Context) (bool, error) {
	resp, err := s.txn(ctx, "init schema",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.keys.Schema()), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(s.keys.Schema(), strconv.Itoa(config.SchemaVersion))}, nil)
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// migrate plans step m and commits it with the schema move in one
// transaction, guarded by the schema key's mod revision as read. It reports
// false if the guard failed (nothing was written).
func (s *Store) migrate(ctx context.Context, m migration, schemaModRev int64) (Migrated, bool, error) {
	from, to := strconv.Itoa(m.from), strconv.Itoa(m.from+1)
	p, err := m.plan(ctx, s)
	if errors.Is(err, errPlanStale) {
		return Migrated{}, false, nil // read again, like a failed guard
	}
	if err != nil {
		return Migrated{}, false, fmt.Errorf("migrate etcd schema %s to %s: %w", from, to, err)
	}
	if s.faultBeforeMigrationCommit != nil {
		s.faultBeforeMigrationCommit(ctx)
	}
	cmps := append([]clientv3.Cmp{
		clientv3.Compare(clientv3.Value(s.keys.Schema()), "=", from),
		clientv3.Compare(clientv3.ModRevision(s.keys.Schema()), "=", schemaModRev),
	}, p.cmps...)
	ops := append(slices.Clone(p.ops), clientv3.OpPut(s.keys.Schema(), to))
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		n := max(len(cmps), len(ops))
		return Migrated{}, false, fmt.Errorf("migrate etcd schema %s to %s: the step needs %d operations in one transaction, more than etcd allows (its --max-txn-ops, 128 by default); nothing was changed: run etcd with --max-txn-ops=%d or more for the upgrade: %w: %w",
			from, to, n, n, config.ErrSchema, err)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) {
		return Migrated{}, false, fmt.Errorf("migrate etcd schema %s to %s: the step's transaction is larger than etcd accepts (its --max-request-bytes, 1.5 MiB by default); nothing was changed: raise it for the upgrade: %w: %w",
			from, to, config.ErrSchema, err)
	}
	if err != nil {
		return Migrated{}, false, config.EtcdError("migrate etcd schema "+from+" to "+to, err)
	}
	if !resp.Succeeded {
		return Migrated{}, false, nil
	}
	return Migrated{From: m.from, To: m.from + 1, What: m.what, Summary: p.summary, Ops: len(ops)}, true, nil
}

// errPlanStale says a plan's reads could not be completed at one etcd
// revision (compacted meanwhile): the step starts again.
var errPlanStale = errors.New("etcd compacted the revision the migration was reading at")

// migrationPage bounds each read of a migration plan, so a long history is
// read in pieces rather than in one huge response.
const migrationPage = 1000

// planPolicyHeads (schema 1 to 2) writes every policy's head: the number of
// its latest revision, read from the revision keys (keys only). Policies that
// were deleted get one too, as their history is kept and their numbering
// continues. One put per policy: the transaction grows with the number of
// policies, not of revisions or volumes.
func planPolicyHeads(ctx context.Context, s *Store) (migrationPlan, error) {
	prefix := s.keys.AllPolicyRevisions()
	end := clientv3.GetPrefixRangeEnd(prefix)
	last := map[string]int64{}
	var atRev int64 // every page is read at the first page's etcd revision
	for from := prefix; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(migrationPage)}
		if atRev != 0 {
			opts = append(opts, clientv3.WithRev(atRev))
		}
		rctx, cancel := s.ctx(ctx)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if errors.Is(err, rpctypes.ErrCompacted) {
			return migrationPlan{}, errPlanStale
		}
		if err != nil {
			return migrationPlan{}, config.EtcdError("read policy revisions", err)
		}
		if atRev == 0 {
			atRev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			name, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
			if !ok {
				continue
			}
			if n, ok := s.keys.ParsePolicyRevision(name, string(kv.Key)); ok && n > last[name] {
				last[name] = n
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	names := slices.Sorted(maps.Keys(last))
	p := migrationPlan{
		// No revision key may have been added or changed since the read: a
		// range compare holds for every key in the range (and for an empty
		// one). Revision keys are never deleted, so additions and changes
		// are all there is to guard against.
		cmps: []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(prefix), "<", atRev+1).WithRange(end)},
	}
	parts := make([]string, 0, len(names))
	for _, n := range names {
		b, err := json.Marshal(PolicyHead{Revision: last[n]})
		if err != nil {
			return migrationPlan{}, err
		}
		p.ops = append(p.ops, clientv3.OpPut(s.keys.PolicyHead(n), string(b)))
		parts = append(parts, fmt.Sprintf("%s=%d", n, last[n]))
	}
	p.summary = fmt.Sprintf("%d policy heads: %s", len(names), strings.Join(parts, " "))
	return p, nil
}
