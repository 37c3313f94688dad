package volmaster

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

func volumeOf(t *testing.T, out string) config.Volume {
	t.Helper()
	var v config.Volume
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	return v
}

// PUT .../formatted marks a volume once: a repeat keeps the first mark and
// writes nothing; a missing volume, another incarnation of the name and bad
// input are refused without writing.
func TestMarkFormattedRoute(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	created := volumeOf(t, h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`))
	if created.Formatted() || strings.Contains(h.must(t, 200, "GET", "/v1/volumes/p/v", ""), "formatted-at") {
		t.Fatal("a new volume is formatted")
	}

	before := h.dump(t)
	other := fmt.Sprintf(`{"host":"h1","created-at":%q}`, created.CreatedAt.Add(-1).Format("2006-01-02T15:04:05.999999999Z07:00"))
	h.must(t, 404, "PUT", "/v1/volumes/p/v/formatted", other)
	h.must(t, 404, "PUT", "/v1/volumes/p/nope/formatted", `{"host":"h1"}`)
	h.must(t, 400, "PUT", "/v1/volumes/p/v/formatted", `{"host":"a/b"}`)
	h.must(t, 400, "PUT", "/v1/volumes/p/v/formatted", `{"host":"h1","colour":"red"}`)
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused mark changed etcd")
	}

	body, _ := json.Marshal(config.FormattedRequest{Host: "h1", CreatedAt: created.CreatedAt})
	marked := volumeOf(t, h.must(t, 200, "PUT", "/v1/volumes/p/v/formatted", string(body)))
	if !marked.Formatted() || marked.Create.Size != "10MB" {
		t.Fatalf("marked volume = %+v", marked)
	}
	// Read back at once (the write settled in the cache).
	if got := volumeOf(t, h.must(t, 200, "GET", "/v1/volumes/p/v", "")); !got.FormattedAt.Equal(marked.FormattedAt) {
		t.Fatalf("GET after the mark: formatted-at %s, want %s", got.FormattedAt, marked.FormattedAt)
	}
	before = h.dump(t)
	again := volumeOf(t, h.must(t, 200, "PUT", "/v1/volumes/p/v/formatted", `{"host":"h2"}`))
	if !again.FormattedAt.Equal(marked.FormattedAt) {
		t.Fatalf("second mark: formatted-at %s, want the first %s", again.FormattedAt, marked.FormattedAt)
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Fatal("a repeated mark changed etcd")
	}
}

// A copy of a snapshot taken after the origin was marked formatted is
// created formatted; a copy of an older snapshot (the origin still blank
// then) is not, and is checked as any new volume at its first mount.
func TestCopyOfFormattedSnapshot(t *testing.T) {
	h := start(t)
	h.must(t, 200, "PUT", "/v1/policies/p", localPolicy)
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"p","name":"v"}`)
	var blank, full config.Snapshot
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{}`)), &blank)
	marked := volumeOf(t, h.must(t, 200, "PUT", "/v1/volumes/p/v/formatted", `{"host":"h1"}`))
	_ = json.Unmarshal([]byte(h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots", `{}`)), &full)

	c1 := volumeOf(t, h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots/"+full.Name+"/copy", `{"name":"c1"}`))
	c0 := volumeOf(t, h.must(t, 201, "POST", "/v1/volumes/p/v/snapshots/"+blank.Name+"/copy", `{"name":"c0"}`))
	if !c1.FormattedAt.Equal(marked.FormattedAt) || c0.Formatted() {
		t.Fatalf("copies: of the later snapshot formatted-at %s (want %s), of the earlier %s (want none)",
			c1.FormattedAt, marked.FormattedAt, c0.FormattedAt)
	}
	for name, want := range map[string]bool{"c1": true, "c0": false} {
		if got := volumeOf(t, h.must(t, 200, "GET", "/v1/volumes/p/"+name, "")); got.Formatted() != want {
			t.Errorf("stored copy %s formatted %v, want %v", name, got.Formatted(), want)
		}
	}
}

// A host token marks a volume only while its host holds the volume's mount
// lock.
func TestMarkFormattedHostScope(t *testing.T) {
	h := startAuth(t)
	h.mustAs(t, "admin", 200, "PUT", "/v1/policies/a", localPolicy)
	h.mustAs(t, "admin", 201, "POST", "/v1/volumes", `{"policy":"a","name":"v"}`)
	refused := func(who, body string, want ...string) {
		t.Helper()
		before := h.dump(t)
		out := h.mustAs(t, who, 403, "PUT", "/v1/volumes/a/v/formatted", body)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("as %s: %s lacks %q", who, out, w)
			}
		}
		if after := h.dump(t); !reflect.DeepEqual(before, after) {
			t.Errorf("refused mark as %s changed etcd", who)
		}
	}
	refused("host", `{"host":"h1"}`, "the mount lock on a/v is held by no host")
	var lease config.HostLease
	_ = json.Unmarshal([]byte(h.mustAs(t, "host", 201, "POST", "/v1/leases", `{"host":"h1"}`)), &lease)
	h.mustAs(t, "host", 200, "PUT", "/v1/uses/a/v", fmt.Sprintf(`{"hostname":"h1","lease":%d,"mount-id":"m"}`, lease.ID))
	refused("host-h2", `{"host":"h2"}`, "held by host", `\"h1\"`, `\"h2\"`)
	refused("host-h2", `{"host":"h1"}`, "names host", `\"h1\"`, `\"h2\"`)
	refused("tenant-a", `{"host":"h1"}`, "tenants may only")
	h.mustAs(t, "host", 200, "PUT", "/v1/volumes/a/v/formatted", `{"host":"h1"}`)
	h.mustAs(t, "admin", 200, "PUT", "/v1/volumes/a/v/formatted", `{"host":"h9"}`)
}
