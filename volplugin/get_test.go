package volplugin

import (
	"strings"
	"testing"
)

// Docker calls Get before it mounts a volume for another container and
// before it unmounts one. With volmaster unreachable, Get answers for a
// volume mounted on this host, so a second container joins the mount and
// both unmounts arrive. A volume not mounted here is said to exist, with no
// mount point and volmaster's state, so that Docker sends the Mount (which
// fails naming volmaster) rather than making a local volume of that name.
func TestGetWithoutVolmasterAnswersForMounts(t *testing.T) {
	needRoot(t)
	c := startCluster(t)
	root := t.TempDir()
	unmountAll(t, root, c.dataDir)
	a := c.startHost(t, "hostA", root, false)
	for _, name := range []string{"policy1/db", "policy1/other"} {
		if _, e := a.call(t, "Create", map[string]any{"Name": name}); e != "" {
			t.Fatalf("Create %s: %s", name, e)
		}
	}
	p1 := a.mount(t, "policy1/db", "id1")
	c.down()

	out, e := a.call(t, "Get", map[string]string{"Name": "policy1/db"})
	if e != "" {
		t.Fatalf("Get of a mounted volume without volmaster: %s", e)
	}
	s := toJSON(out)
	for _, want := range []string{`"Mountpoint":"` + p1 + `"`, `"locked-by":"hostA"`, `"mounts":1`, `"policy":"policy1"`, `"volmaster":"unavailable`} {
		if !strings.Contains(s, want) {
			t.Errorf("Get = %s, lacks %s", s, want)
		}
	}
	other, e := a.call(t, "Get", map[string]string{"Name": "policy1/other"})
	if s := toJSON(other); e != "" || !strings.Contains(s, `"volmaster":"unreachable`) || strings.Contains(s, `"Mountpoint":"/`) {
		t.Errorf("Get of a volume not mounted here without volmaster = %s %q, want it said to exist, unmounted, volmaster unreachable", s, e)
	}
	if _, e := a.call(t, "Mount", map[string]string{"Name": "policy1/other", "ID": "x"}); !strings.Contains(e, "unreachable") {
		t.Errorf("Mount of a volume not mounted here without volmaster: %q, want an error saying volmaster is unreachable", e)
	}
	if p2 := a.mount(t, "policy1/db", "id2"); p2 != p1 {
		t.Errorf("second mount without volmaster: %q, want %q", p2, p1)
	}
	a.unmount(t, "policy1/db", "id2")
	a.unmount(t, "policy1/db", "id1")
	if out, _ := a.call(t, "Get", map[string]string{"Name": "policy1/db"}); strings.Contains(toJSON(out), `"Mountpoint":"/`) {
		t.Errorf("Get of a volume no longer mounted here, without volmaster = %s, want no mount point", toJSON(out))
	}
}
