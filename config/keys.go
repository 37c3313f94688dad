package config

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// DefaultPrefix is the etcd key prefix when none is configured.
const DefaultPrefix = "/volplugin"

// SchemaVersion is the version of the key layout below. Version 2 added
// policy-heads; config/store migrates an older layout (see migrate.go there).
const SchemaVersion = 2

// Keys is the etcd key layout, the only place that builds or parses keys.
// Names never contain '/', so every segment below is one name.
//
//	<prefix>/schema                                 schema version ("2")
//	<prefix>/global                                 Global (JSON)
//	<prefix>/policies/<policy>                      Policy, current revision (JSON)
//	<prefix>/policy-revisions/<policy>/<rev:%020d>  Policy, every upload (JSON); rev counts from 1
//	<prefix>/policy-heads/<policy>                  number of the policy's latest revision (JSON); since schema 2
//	<prefix>/volumes/<policy>/<volume>              Volume without runtime (JSON)
//	<prefix>/runtime/<policy>/<volume>              RuntimeOptions (JSON)
//	<prefix>/uses/<policy>/<volume>                 Use: mount lock, on the holder's lease (JSON)
//	<prefix>/oplocks/<policy>/<volume>              operation lock (create/remove/snapshot), on a lease
//	<prefix>/intents/<policy>/<volume>              Intent of the operation holding the lock; no lease
//	<prefix>/hosts/<host>/<holder>                  HostLease of one daemon of a host, on that lease
//	<prefix>/usage/<policy>/<volume>                Usage: when the volume was last mounted/unmounted
//	<prefix>/snapshots/<policy>/<volume>/<snap>     Snapshot record (JSON); <snap> is a UTC timestamp
//	<prefix>/supervisor/leader/<lease>              volsupervisor election keys (etcd concurrency.Election)
//	<prefix>/supervisor/status/<name>               SupervisorStatus of each running volsupervisor, on its lease
//	<prefix>/tokens/<id>                            Token: role, policies, SHA-256 of the secret
//	<prefix>/locks/bootstrap/<lease>                etcd concurrency.Mutex: one volmaster at a time makes the first admin token
//	<prefix>/volmasters/<id>                        VolmasterStatus of each running volmaster, on its lease
//	<prefix>/requests/<digest>                       store.Request: an Idempotency-Key's request and answer, on a lease
//	<prefix>/trash/<policy>/<volume>/<id>            TrashEntry of a removed volume (JSON); <id> is its removal time (TrashID)
//
// A volume's record and runtime are created and deleted together in one
// transaction. Removing a volume into the trash deletes its record, runtime,
// usage and snapshot records and writes its trash entry in one transaction;
// a restore does the reverse. Policy revisions survive the policy's deletion, so history
// stays readable. A policy's head, written in the same transaction as each
// revision, also survives it: an upload takes its number from the head (one
// key) rather than from the last revision key, which etcd can only find by
// reading and sorting the policy's whole history, and numbering continues
// after a deletion even if old revisions are ever pruned.
type Keys struct {
	Prefix string
}

// NewKeys returns the layout under prefix ("" means DefaultPrefix).
func NewKeys(prefix string) (Keys, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasPrefix(prefix, "/") || path.Clean(prefix) != prefix || prefix == "/" {
		return Keys{}, fmt.Errorf("key prefix %q must be a clean absolute path like /volplugin: %w", prefix, ErrInvalid)
	}
	return Keys{Prefix: prefix}, nil
}

// All is the prefix holding every key of the suite.
func (k Keys) All() string { return k.Prefix + "/" }

// Schema holds the schema version.
func (k Keys) Schema() string { return k.Prefix + "/schema" }

// Global holds the global configuration.
func (k Keys) Global() string { return k.Prefix + "/global" }

// Policies is the prefix of all current policies.
func (k Keys) Policies() string { return k.Prefix + "/policies/" }

// Policy is the current revision of one policy.
func (k Keys) Policy(name string) string { return k.Policies() + name }

// AllPolicyRevisions is the prefix of every policy's revisions.
func (k Keys) AllPolicyRevisions() string { return k.Prefix + "/policy-revisions/" }

// PolicyRevisions is the prefix of one policy's revisions.
func (k Keys) PolicyRevisions(name string) string {
	return k.AllPolicyRevisions() + name + "/"
}

// PolicyRevision is one numbered revision of a policy.
func (k Keys) PolicyRevision(name string, rev int64) string {
	return fmt.Sprintf("%s%020d", k.PolicyRevisions(name), rev)
}

// ParsePolicyRevision returns the revision number of a PolicyRevision key.
func (k Keys) ParsePolicyRevision(name, key string) (int64, bool) {
	s, ok := strings.CutPrefix(key, k.PolicyRevisions(name))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// PolicyHeads is the prefix of every policy's head.
func (k Keys) PolicyHeads() string { return k.Prefix + "/policy-heads/" }

// PolicyHead holds the number of a policy's latest revision.
func (k Keys) PolicyHead(name string) string { return k.PolicyHeads() + name }

// Volumes is the prefix of every volume record.
func (k Keys) Volumes() string { return k.Prefix + "/volumes/" }

// VolumesOf is the prefix of one policy's volume records.
func (k Keys) VolumesOf(policy string) string { return k.Volumes() + policy + "/" }

// Volume is one volume record.
func (k Keys) Volume(r VolumeRef) string { return k.VolumesOf(r.Policy) + r.Name }

// Runtimes is the prefix of every runtime record.
func (k Keys) Runtimes() string { return k.Prefix + "/runtime/" }

// RuntimesOf is the prefix of one policy's runtime records.
func (k Keys) RuntimesOf(policy string) string { return k.Runtimes() + policy + "/" }

// Runtime is one volume's runtime record.
func (k Keys) Runtime(r VolumeRef) string { return k.RuntimesOf(r.Policy) + r.Name }

// Uses is the prefix of every mount lock.
func (k Keys) Uses() string { return k.Prefix + "/uses/" }

// Use is one volume's mount lock.
func (k Keys) Use(r VolumeRef) string { return k.Uses() + r.Policy + "/" + r.Name }

// OpLocks is the prefix of every operation lock.
func (k Keys) OpLocks() string { return k.Prefix + "/oplocks/" }

// OpLock is one volume's operation lock.
func (k Keys) OpLock(r VolumeRef) string { return k.OpLocks() + r.Policy + "/" + r.Name }

// Intents is the prefix of every operation's intent.
func (k Keys) Intents() string { return k.Prefix + "/intents/" }

// Intent is the key of the intent of the operation holding r's operation
// lock: written and deleted with the lock, but on no lease, so it outlives a
// holder that dies half-way.
func (k Keys) Intent(r VolumeRef) string { return k.Intents() + r.Policy + "/" + r.Name }

// Hosts is the prefix of every host's lease record.
func (k Keys) Hosts() string { return k.Prefix + "/hosts/" }

// Host is the lease record of the daemon holder on host (see Use.Holder);
// of the host itself for a daemon that sends no holder. Each daemon given a
// host label has its own, so one daemon's new lease does not hide another's
// from LeaseHost.
func (k Keys) Host(host, holder string) string {
	if holder == "" {
		return k.Hosts() + host
	}
	return k.Hosts() + host + "/" + holder
}

// HostOfKey returns the host a lease record's key names.
func (k Keys) HostOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.Hosts())
	if !ok {
		return "", false
	}
	host, _, _ := strings.Cut(rest, "/")
	return host, host != ""
}

// Usages is the prefix of every volume's usage record.
func (k Keys) Usages() string { return k.Prefix + "/usage/" }

// Usage is one volume's usage record.
func (k Keys) Usage(r VolumeRef) string { return k.Usages() + r.Policy + "/" + r.Name }

// Snapshots is the prefix of one volume's snapshot records.
func (k Keys) Snapshots(r VolumeRef) string {
	return k.Prefix + "/snapshots/" + r.Policy + "/" + r.Name + "/"
}

// Snapshot is one snapshot record.
func (k Keys) Snapshot(r VolumeRef, snap string) string { return k.Snapshots(r) + snap }

// AllSnapshots is the prefix of every snapshot record.
func (k Keys) AllSnapshots() string { return k.Prefix + "/snapshots/" }

// Leader is the volsupervisor election prefix.
func (k Keys) Leader() string { return k.Prefix + "/supervisor/leader" }

// SupervisorStatuses is the prefix of the volsupervisors' status records.
func (k Keys) SupervisorStatuses() string { return k.Prefix + "/supervisor/status/" }

// SupervisorStatus is one volsupervisor's status record.
func (k Keys) SupervisorStatus(name string) string { return k.SupervisorStatuses() + name }

// BootstrapLock is the mutex (etcd concurrency.Mutex prefix) volmasters
// starting at once with --auth take before looking for an admin token and
// making the first one, so only one of them makes it.
func (k Keys) BootstrapLock() string { return k.Prefix + "/locks/bootstrap" }

// Volmasters is the prefix of the running volmasters' status records.
func (k Keys) Volmasters() string { return k.Prefix + "/volmasters/" }

// Volmaster is one running volmaster's status record, on its lease.
func (k Keys) Volmaster(id string) string { return k.Volmasters() + id }

// Tokens is the prefix of every API token.
func (k Keys) Tokens() string { return k.Prefix + "/tokens/" }

// Token is one API token.
func (k Keys) Token(id string) string { return k.Tokens() + id }

// Requests is the prefix of the records of requests sent with an
// Idempotency-Key.
func (k Keys) Requests() string { return k.Prefix + "/requests/" }

// Request is the record of one Idempotency-Key; id is a digest of the key
// and its caller, so the key itself is never stored.
func (k Keys) Request(id string) string { return k.Requests() + id }

// AllTrash is the prefix of every trash entry.
func (k Keys) AllTrash() string { return k.Prefix + "/trash/" }

// TrashOf is the prefix of one volume name's trash entries.
func (k Keys) TrashOf(r VolumeRef) string { return k.AllTrash() + r.Policy + "/" + r.Name + "/" }

// Trash is one trash entry.
func (k Keys) Trash(r TrashRef) string { return k.TrashOf(r.Volume) + r.ID }

// ParseRef returns the volume named by a key under one of the per-volume
// prefixes (Volumes, Runtimes, Uses, OpLocks).
func (k Keys) ParseRef(prefix, key string) (VolumeRef, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return VolumeRef{}, false
	}
	p, n, ok := strings.Cut(rest, "/")
	if !ok || p == "" || n == "" || strings.Contains(n, "/") {
		return VolumeRef{}, false
	}
	return VolumeRef{Policy: p, Name: n}, true
}
