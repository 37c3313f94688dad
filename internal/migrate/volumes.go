package migrate

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/volplugin/volplugin/config"
)

// origVolume is a volume record (volumes/<policy>/<name>/create) as the
// original stored it: a copy of its policy taken at creation.
type origVolume struct {
	Policy   string           `json:"policy"`
	Name     string           `json:"name"`
	Unlocked bool             `json:"unlocked"`
	Driver   map[string]any   `json:"driver"`
	Mount    string           `json:"mount"`
	Create   origCreate       `json:"create"`
	Runtime  origRuntime      `json:"runtime"`
	Backends *config.Backends `json:"backends"`
}

var volumeFields = []string{"policy", "name", "unlocked", "driver", "mount", "create", "runtime", "backends"}

// volumes converts every volume record with its runtime. A Ceph volume
// adopts its image by the original's name, and counts as formatted: the
// original formatted every image when it created it.
func (c *converter) volumes(policies []Policy) []config.Volume {
	byName := map[string]config.Policy{}
	for _, p := range policies {
		byName[p.Name] = p.Import.Revisions[len(p.Import.Revisions)-1].Policy
	}
	refs := map[config.VolumeRef]bool{}
	for _, k := range c.tree.Keys() {
		rest, ok := strings.CutPrefix(k, "volumes/")
		if !ok {
			continue
		}
		parts := strings.Split(rest, "/")
		if len(parts) != 3 || (parts[2] != "create" && parts[2] != "runtime") {
			c.note("key "+k, k, "", "not volumes/<policy>/<volume>/{create,runtime}: not carried over")
			continue
		}
		refs[config.VolumeRef{Policy: parts[0], Name: parts[1]}] = true
	}
	var out []config.Volume
	for _, ref := range slices.SortedFunc(maps.Keys(refs), func(a, b config.VolumeRef) int {
		return strings.Compare(a.String(), b.String())
	}) {
		if v, ok := c.volume(ref, byName); ok {
			out = append(out, v)
		}
	}
	if len(out) > 0 {
		c.note("every volume", "created-at", "", "the original kept no creation time: the import's time is recorded")
		c.note("every volume", "policy-revision", "", "the original did not record the revision a volume was made from: left out")
	}
	return out
}

func (c *converter) volume(ref config.VolumeRef, policies map[string]config.Policy) (config.Volume, bool) {
	rec := "volume " + ref.String()
	if err := ref.Validate(); err != nil {
		c.problem("%s: %v", rec, err)
		return config.Volume{}, false
	}
	base := "volumes/" + ref.Policy + "/" + ref.Name + "/"
	raw, ok := c.tree[base+"create"]
	if !ok {
		c.problem("%s: a runtime without its record (%screate)", rec, base)
		return config.Volume{}, false
	}
	var o origVolume
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		c.problem("%s: not JSON the original wrote: %v", rec, err)
		return config.Volume{}, false
	}
	c.unknownFields(rec, raw, volumeFields...)
	if (o.Policy != "" && o.Policy != ref.Policy) || (o.Name != "" && o.Name != ref.Name) {
		c.note(rec, "policy/name", o.Policy+"/"+o.Name, "the original found a volume by its key, "+ref.String())
	}
	if o.Backends == nil || o.Backends.Mount == "" {
		c.problem("%s: no backends in its record", rec)
		return config.Volume{}, false
	}
	v := config.Volume{
		Policy: ref.Policy, Name: ref.Name, CreatedAt: c.now,
		Backends: *o.Backends,
		Driver:   c.driver(rec, *o.Backends, o.Driver),
	}
	if v.Backends.CRUD != "" {
		size, ok := c.origSize(rec, o.Create.Size)
		if !ok {
			return config.Volume{}, false
		}
		v.Create = config.CreateOptions{Size: size, Filesystem: o.Create.FileSystem}
		if v.Create.Filesystem == "" {
			// The original's create filled in its default filesystem.
			v.Create.Filesystem = config.DefaultFilesystem
		}
		v.FileSystems = c.volumeFilesystems(rec, ref.Policy, policies)
		if v.Backends.CRUD == config.BackendCeph {
			v.Image = config.OriginalImageName(ref.Policy, ref.Name)
			// Formatted by the original at its creation: never again.
			v.FormattedAt = c.now
		}
	} else if o.Create != (origCreate{}) {
		c.note(rec, "create", o.Create.Size+" "+o.Create.FileSystem, "backend "+v.Backends.Mount+" makes and formats nothing: not carried over")
	}
	rt := o.Runtime
	if rraw, ok := c.tree[base+"runtime"]; ok {
		var r origRuntime
		if err := json.Unmarshal([]byte(rraw), &r); err != nil {
			c.problem("%s: its runtime is not JSON the original wrote: %v", rec, err)
			return config.Volume{}, false
		}
		rt = r
	} else {
		c.note(rec, "runtime", "", "no runtime record: the runtime in its volume record is used")
	}
	v.Runtime = c.runtime(rec, rt)
	v.Unlocked = c.unlocked(rec, o.Unlocked, v.Backends)
	if o.Mount != "" {
		if v.Backends.Mount == config.BackendNFS {
			v.Driver.Options = map[string]string{config.DriverSource: o.Mount}
		} else {
			c.note(rec, "mount", o.Mount, "only an nfs volume has an export: not carried over")
		}
	}
	if err := v.CheckImported(); err != nil {
		c.problem("%s: %v", rec, err)
		return config.Volume{}, false
	}
	return v, true
}

// volumeFilesystems are the mkfs commands of the volume's policy: the
// original's volume records carry none. A formatted volume never runs one,
// but its record names its filesystem's.
func (c *converter) volumeFilesystems(rec, policy string, policies map[string]config.Policy) map[string]config.FSCommand {
	if p, ok := policies[policy]; ok {
		return p.AllFilesystems()
	}
	c.note(rec, "filesystems", "", "its policy "+policy+" is not imported: the built-in mkfs commands are recorded")
	return config.DefaultFilesystems()
}
