package migrate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"

	"github.com/volplugin/volplugin/config"
)

// Plan is the original's tree converted: what volmaster is to import, the
// original's locks, and every field not carried over.
type Plan struct {
	// Global is the converted global configuration; nil if the tree has
	// none.
	Global *config.Global
	// Policies are sorted by name.
	Policies []Policy
	// Volumes are sorted by policy and name.
	Volumes []config.Volume
	// Locks are the original's mount and snapshot locks found in the tree.
	Locks []Lock
	// Notes list every field not carried over (or changed), and why.
	Notes []Note
	// Problems are records that cannot be imported as they are; the import
	// is refused while there are any.
	Problems []string
}

// Policy is one policy to import.
type Policy struct {
	Name   string
	Import config.PolicyImport
}

// Lock is one of the original's locks (users/mount/..., users/snapshot/...):
// a host (or its volsupervisor) may still use the volume.
type Lock struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"`
	Volume string `json:"volume"`
	Host   string `json:"host,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Note says what became of a field of the original's that is not carried
// over as it was.
type Note struct {
	Record string `json:"record"`
	Field  string `json:"field"`
	Value  string `json:"value,omitempty"`
	Why    string `json:"why"`
}

func (n Note) String() string {
	v := ""
	if n.Value != "" {
		v = " = " + n.Value
	}
	return fmt.Sprintf("%s: %s%s: %s", n.Record, n.Field, v, n.Why)
}

// converter accumulates notes and problems while converting.
type converter struct {
	tree     Tree
	now      time.Time
	notes    map[Note]bool
	problems []string
}

func (c *converter) note(record, field, value, why string) {
	c.notes[Note{Record: record, Field: field, Value: value, Why: why}] = true
}

func (c *converter) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// Convert converts the original's tree into a plan, as of now (the time
// recorded where the original kept none).
func Convert(t Tree, now time.Time) *Plan {
	c := &converter{tree: t, now: now.UTC(), notes: map[Note]bool{}}
	plan := &Plan{}
	plan.Global = c.global()
	plan.Policies = c.policies()
	plan.Volumes = c.volumes(plan.Policies)
	plan.Locks = c.locks()
	c.others()
	plan.Notes = slices.SortedFunc(maps.Keys(c.notes), func(a, b Note) int {
		return cmp.Or(strings.Compare(a.Record, b.Record), strings.Compare(a.Field, b.Field), strings.Compare(a.Value, b.Value))
	})
	plan.Problems = c.problems
	return plan
}

// origGlobal is the original's global-config: durations in nanoseconds.
type origGlobal struct {
	Debug     bool   `json:"Debug"`
	Timeout   int64  `json:"Timeout"`
	TTL       int64  `json:"TTL"`
	MountPath string `json:"MountPath"`
}

func (c *converter) global() *config.Global {
	const rec = "global config"
	raw, ok := c.tree["global-config"]
	if !ok {
		return nil
	}
	var o origGlobal
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		c.problem("%s: not JSON the original wrote: %v", rec, err)
		return nil
	}
	c.unknownFields(rec, raw, "Debug", "Timeout", "TTL", "MountPath")
	g := config.Global{Debug: o.Debug, MountPath: o.MountPath}
	g.TTL = c.nanos(rec, "TTL", o.TTL, time.Second, "seconds")
	g.Timeout = c.nanos(rec, "Timeout", o.Timeout, time.Minute, "minutes")
	if err := g.Normalize(); err != nil {
		c.problem("%s: %v", rec, err)
		return nil
	}
	return &g
}

// nanos converts one of the original's durations (a time.Duration in
// nanoseconds) into whole units, rounding up.
func (c *converter) nanos(rec, field string, ns int64, unit time.Duration, name string) int64 {
	if ns <= 0 {
		if ns < 0 {
			c.note(rec, field, strconv.FormatInt(ns, 10), "negative: the default is used")
		}
		return 0
	}
	n := (ns + int64(unit) - 1) / int64(unit)
	if ns%int64(unit) != 0 {
		c.note(rec, field, time.Duration(ns).String(), fmt.Sprintf("counted here in whole %s: rounded up to %d", name, n))
	}
	return n
}

// unknownFields notes the top-level fields of raw that the importer does
// not know.
func (c *converter) unknownFields(rec, raw string, known ...string) {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(raw), &m) != nil {
		return
	}
	for k, v := range m {
		if !slices.Contains(known, k) {
			c.note(rec, k, string(v), "not a field the original's release wrote: not carried over")
		}
	}
}

// origSize converts one of the original's sizes to ours. The original read
// a size with decimal units (go-units' FromHumanSize: 2GB = 2,000,000,000
// bytes), kept whole megabytes and had rbd make an image of that many MiB;
// here units are binary. The size keeps its spelling where both mean the
// same image, and is written in MiB where they do not.
func (c *converter) origSize(rec, s string) (string, bool) {
	n, err := units.FromHumanSize(strings.TrimSpace(s))
	mb := n / units.MB
	if err != nil || mb <= 0 {
		c.problem("%s: create.size %q is not a size the original accepted", rec, s)
		return "", false
	}
	if ours, err := config.ParseSize(s); err == nil && ours == mb<<20 {
		return s, true
	}
	out := fmt.Sprintf("%dMiB", mb)
	c.note(rec, "create.size", s, fmt.Sprintf("the original made %d MiB of it (decimal units, whole MB, rbd's MiB); here %s means %s: written as %s",
		mb, s, binaryMeaning(s), out))
	return out, true
}

func binaryMeaning(s string) string {
	n, err := config.ParseSize(s)
	if err != nil {
		return "nothing valid"
	}
	return units.BytesSize(float64(n))
}

// origPolicy is a policy as the original stored it.
type origPolicy struct {
	Name        string            `json:"name"`
	Unlocked    bool              `json:"unlocked"`
	Create      origCreate        `json:"create"`
	Runtime     origRuntime       `json:"runtime"`
	Driver      map[string]any    `json:"driver"`
	FileSystems map[string]string `json:"filesystems"`
	Backends    *config.Backends  `json:"backends"`
	Backend     string            `json:"backend"`
}

type origCreate struct {
	Size       string `json:"size"`
	FileSystem string `json:"filesystem"`
}

type origRuntime struct {
	Snapshots bool `json:"snapshots"`
	Snapshot  struct {
		Frequency string `json:"frequency"`
		Keep      uint   `json:"keep"`
	} `json:"snapshot"`
	RateLimit struct {
		WriteIOPS uint64 `json:"write-iops"`
		ReadIOPS  uint64 `json:"read-iops"`
		WriteBPS  uint64 `json:"write-bps"`
		ReadBPS   uint64 `json:"read-bps"`
	} `json:"rate-limit"`
}

var policyFields = []string{"name", "unlocked", "create", "runtime", "driver", "filesystems", "backends", "backend"}

// policy converts one stored policy document of the original's.
func (c *converter) policy(rec, name, raw string) (config.Policy, bool) {
	var o origPolicy
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		c.problem("%s: not JSON the original wrote: %v", rec, err)
		return config.Policy{}, false
	}
	c.unknownFields(rec, raw, policyFields...)
	if o.Name != "" && o.Name != name {
		c.note(rec, "name", o.Name, "the original named a policy by its key, "+name)
	}
	p := config.Policy{Name: name}
	switch {
	case o.Backends != nil && *o.Backends != (config.Backends{}):
		p.Backends = *o.Backends
	case o.Backend == config.BackendCeph:
		p.Backends = config.Backends{CRUD: config.BackendCeph, Mount: config.BackendCeph, Snapshot: config.BackendCeph}
	case o.Backend == config.BackendNFS:
		p.Backends = config.Backends{Mount: config.BackendNFS}
	default:
		c.problem("%s: no backends (the original refused it too)", rec)
		return config.Policy{}, false
	}
	p.Driver = c.driver(rec, p.Backends, o.Driver)
	if p.Backends.CRUD != "" {
		size, ok := c.origSize(rec, o.Create.Size)
		if !ok {
			return config.Policy{}, false
		}
		p.Create = config.CreateOptions{Size: size, Filesystem: o.Create.FileSystem}
	} else if o.Create != (origCreate{}) {
		c.note(rec, "create", fmt.Sprintf("%+v", o.Create), "backend "+p.Backends.Mount+" creates nothing: not carried over")
	}
	fss, ok := c.filesystems(rec, o.FileSystems, p.Create.Filesystem)
	if !ok {
		return config.Policy{}, false
	}
	p.FileSystems = fss
	p.Runtime = c.runtime(rec, o.Runtime)
	p.Unlocked = c.unlocked(rec, o.Unlocked, p.Backends)
	if err := p.Normalize(); err != nil {
		c.problem("%s: %v", rec, err)
		return config.Policy{}, false
	}
	return p, true
}

// driver carries the pool over; the original's Ceph driver read nothing
// else from a policy's driver options.
func (c *converter) driver(rec string, b config.Backends, opts map[string]any) config.Driver {
	var d config.Driver
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		v := opts[k]
		if s, ok := v.(string); ok && k == "pool" && b.Mount == config.BackendCeph {
			d.Pool = s
			continue
		}
		js, _ := json.Marshal(v)
		c.note(rec, "driver."+k, string(js), "the original's "+cmp.Or(b.Mount, "none")+" driver did not read it: not carried over")
	}
	if b.Mount == config.BackendCeph && d.Pool == "" {
		d.Pool = "rbd"
		c.note(rec, "driver.pool", "", "none given: rbd, the pool the original's rbd commands used by default")
	}
	return d
}

// filesystems carries the mkfs commands over as argv (the original ran them
// through a shell, with % replaced by the device); a command outside the
// allowlist is dropped, or refused when it is the one in use.
func (c *converter) filesystems(rec string, fss map[string]string, inUse string) (map[string]config.FSCommand, bool) {
	if len(fss) == 0 {
		return nil, true
	}
	ok := true
	out := map[string]config.FSCommand{}
	for _, name := range slices.Sorted(maps.Keys(fss)) {
		cmd := config.FSCommand(strings.Fields(fss[name]))
		if err := config.CheckFSCommand(cmd); err != nil {
			if name == cmp.Or(inUse, config.DefaultFilesystem) {
				c.problem("%s: filesystem %s: %v", rec, name, err)
				ok = false
				continue
			}
			c.note(rec, "filesystems."+name, fss[name], fmt.Sprintf("refused here (%s): dropped", strings.TrimSuffix(err.Error(), ": "+config.ErrInvalid.Error())))
			continue
		}
		out[name] = cmd
	}
	return out, ok
}

// runtime converts the runtime options. Snapshots on without a frequency
// or with keep 0 never kept a snapshot in the original (its volsupervisor
// could not schedule them, or pruned each at once): they are turned off.
func (c *converter) runtime(rec string, o origRuntime) config.RuntimeOptions {
	var r config.RuntimeOptions
	r.RateLimit = config.RateLimit{
		ReadBPS: config.ByteRate(o.RateLimit.ReadBPS), WriteBPS: config.ByteRate(o.RateLimit.WriteBPS),
		ReadIOPS: o.RateLimit.ReadIOPS, WriteIOPS: o.RateLimit.WriteIOPS,
	}
	r.Snapshots = o.Snapshots
	r.Snapshot.Keep = o.Snapshot.Keep
	if f := o.Snapshot.Frequency; f != "" {
		d, err := config.ParseDuration(f)
		switch {
		case err != nil:
			c.note(rec, "runtime.snapshot.frequency", f, "not a duration: dropped")
		case d.D() < config.MinSnapshotFrequency:
			c.note(rec, "runtime.snapshot.frequency", f, "shorter than "+config.MinSnapshotFrequency.String()+" (the original could not schedule it): dropped")
		default:
			r.Snapshot.Frequency = d
		}
	}
	if r.Snapshots && (r.Snapshot.Frequency == 0 || r.Snapshot.Keep == 0) {
		r.Snapshots = false
		c.note(rec, "runtime.snapshots", "true", "without a frequency or with keep 0 the original kept no snapshot: turned off")
	}
	return r
}

// unlocked keeps unlocked where it is safe (nfs): an unlocked block volume
// mounted on two hosts at once corrupts its filesystem.
func (c *converter) unlocked(rec string, unlocked bool, b config.Backends) bool {
	if !unlocked || b.Mount == config.BackendNFS {
		return unlocked
	}
	c.note(rec, "unlocked", "true", "refused on "+b.Mount+" (two hosts mounting one image at once corrupt its filesystem): its volumes take the mount lock")
	return false
}

// policies converts every policy with its archived revisions, oldest
// first. The current version is the last revision; one that differs from
// the last archive (or a policy never archived) becomes a revision of its
// own, at the import's time. Archives of a policy with no current version
// (deleted in the original) are imported as its history.
func (c *converter) policies() []Policy {
	names := map[string]bool{}
	archives := map[string][]int64{}
	for _, k := range c.tree.Keys() {
		if n, ok := strings.CutPrefix(k, "policies/"); ok && !strings.Contains(n, "/") {
			names[n] = true
		}
		if rest, ok := strings.CutPrefix(k, "policy-archives/"); ok {
			n, ts, ok := strings.Cut(rest, "/")
			sec, err := strconv.ParseInt(ts, 10, 64)
			if !ok || err != nil || strings.Contains(ts, "/") {
				c.note("policy archive "+rest, "key", k, "not <policy>/<unix-time>: not carried over")
				continue
			}
			names[n] = true
			archives[n] = append(archives[n], sec)
		}
	}
	var out []Policy
	for _, name := range slices.Sorted(maps.Keys(names)) {
		rec := "policy " + name
		if err := config.ValidateName("policy", name); err != nil {
			c.problem("%s: %v", rec, err)
			continue
		}
		var in config.PolicyImport
		ok := true
		slices.Sort(archives[name])
		for _, sec := range archives[name] {
			p, good := c.policy(rec, name, c.tree["policy-archives/"+name+"/"+strconv.FormatInt(sec, 10)])
			ok = ok && good
			in.Revisions = append(in.Revisions, config.ImportedRevision{Time: time.Unix(sec, 0).UTC(), Policy: p})
		}
		raw, current := c.tree["policies/"+name]
		switch {
		case !current:
			in.Deleted = true
			c.note(rec, "policies/"+name, "", "deleted in the original: its archived revisions are imported as its history, with no current policy")
		default:
			p, good := c.policy(rec, name, raw)
			ok = ok && good
			if n := len(in.Revisions); good && (n == 0 || !samePolicy(in.Revisions[n-1].Policy, p)) {
				in.Revisions = append(in.Revisions, config.ImportedRevision{Time: c.now, Policy: p})
				c.note(rec, "revision time", "", fmt.Sprintf("the current version has no archived revision: imported as revision %d at the import's time", n+1))
			}
		}
		if ok {
			out = append(out, Policy{Name: name, Import: in})
		}
	}
	return out
}

func samePolicy(a, b config.Policy) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// locks lists the original's mount and snapshot locks.
func (c *converter) locks() []Lock {
	var out []Lock
	for _, k := range c.tree.Keys() {
		rest, ok := strings.CutPrefix(k, "users/")
		if !ok {
			continue
		}
		kind, vol, _ := strings.Cut(rest, "/")
		l := Lock{Key: k, Kind: kind, Volume: vol}
		var u struct {
			Hostname string `json:"Hostname"`
			Reason   string `json:"Reason"`
		}
		if json.Unmarshal([]byte(c.tree[k]), &u) == nil {
			l.Host, l.Reason = u.Hostname, u.Reason
		}
		out = append(out, l)
	}
	return out
}

// others notes the keys no other step reads.
func (c *converter) others() {
	for _, k := range c.tree.Keys() {
		top, rest, _ := strings.Cut(k, "/")
		switch top {
		case "global-config", "policies", "policy-archives", "volumes", "users":
		case "snapshots":
			c.note("snapshot request "+rest, "snapshots/"+rest, "", "an on-demand snapshot the original had not taken yet: not carried over (volcli volume snapshot take)")
		default:
			c.note("key "+k, k, "", "not part of the original's layout: not carried over")
		}
	}
}
