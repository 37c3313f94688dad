package volplugin

import (
	"strings"
	"testing"
)

// Docker calls Get before it mounts a volume for another container and
// before it unmounts one. With volmaster unreachable, Get answers for a
// volume mounted on this host, so a second container joins the mount and
// both unmounts arrive; a volume not mounted here still needs volmaster.
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
	if _, e := a.call(t, "Get", map[string]string{"Name": "policy1/other"}); !strings.Contains(e, "unreachable") {
		t.Errorf("Get of a volume not mounted here without volmaster: %q, want an error saying volmaster is unreachable", e)
	}
	if p2 := a.mount(t, "policy1/db", "id2"); p2 != p1 {
		t.Errorf("second mount without volmaster: %q, want %q", p2, p1)
	}
	a.unmount(t, "policy1/db", "id2")
	a.unmount(t, "policy1/db", "id1")
	if _, e := a.call(t, "Get", map[string]string{"Name": "policy1/db"}); e == "" {
		t.Error("Get answered for a volume no longer mounted here, without volmaster")
	}
}
