package volmaster

import (
	"reflect"
	"strings"
	"testing"
)

const importedVolume = `{"volume":{"policy":"p","name":"v","image":"p.v","formatted-at":"2026-01-01T00:00:00Z",` +
	`"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"},"driver":{"pool":"rbd"},` +
	`"create":{"size":"10MB","filesystem":"ext4"},"filesystems":{"ext4":["mkfs.ext4","-m0","%"]}}}`

// Import routes: a dry run and every bad request change nothing; a record
// of the same name that is not the imported one is a 409; the imported
// volume reads back with its image and formatted.
func TestImportRoutes(t *testing.T) {
	h := start(t)
	before := h.dump(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/import/volumes/p/v?dry-run=true", importedVolume},
		{"POST", "/v1/import/global?dry-run=true", `{"TTL":30}`},
		{"POST", "/v1/import/policies/p?dry-run=true", `{"revisions":[{"time":"2017-01-01T00:00:00Z","policy":{"backend":"ceph","create":{"size":"10MB"}}}]}`},
	} {
		if body := h.must(t, 200, c.method, c.path, c.body); !strings.Contains(body, `"action":"created"`) {
			t.Errorf("%s %s: %s", c.method, c.path, body)
		}
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/v1/import/volumes/p/v?dry-run=maybe", importedVolume, 400},
		{"/v1/import/volumes/p/other", importedVolume, 400},                                                  // body names p/v
		{"/v1/import/volumes/p/v", strings.Replace(importedVolume, `"p.v"`, `"p/../x"`, 1), 400},             // bad image name
		{"/v1/import/volumes/p/v", strings.Replace(importedVolume, `"crud":"ceph"`, `"crud":"nfs"`, 1), 400}, // nfs cannot create
		{"/v1/import/policies/p", `{"revisions":[]}`, 400},
		{"/v1/import/policies/p", `{"revisions":[{"policy":{"backend":"ceph"}}]}`, 400}, // no size
		{"/v1/import/global", `{"TTL":-1}`, 400},
	} {
		if code, body := h.do(t, "POST", c.path, c.body); code != c.want {
			t.Errorf("POST %s: %d, want %d: %s", c.path, code, c.want, body)
		}
	}
	if after := h.dump(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("dry runs and refused imports changed etcd")
	}
	h.must(t, 200, "POST", "/v1/import/volumes/p/v", importedVolume)
	if body := h.must(t, 200, "POST", "/v1/import/volumes/p/v", importedVolume); !strings.Contains(body, `"action":"unchanged"`) {
		t.Errorf("second import: %s", body)
	}
	got := h.must(t, 200, "GET", "/v1/volumes/p/v", "")
	for _, want := range []string{`"image":"p.v"`, `"formatted-at":"2026-01-01T00:00:00Z"`} {
		if !strings.Contains(got, want) {
			t.Errorf("imported volume lacks %s: %s", want, got)
		}
	}
	h.must(t, 200, "PUT", "/v1/policies/mine", `{"backend":"local","create":{"size":"1MB"}}`)
	if code, body := h.do(t, "POST", "/v1/import/policies/mine", `{"revisions":[{"policy":{"backend":"ceph","create":{"size":"10MB"}}}]}`); code != 409 {
		t.Errorf("import over another policy: %d %s", code, body)
	}
	h.must(t, 201, "POST", "/v1/volumes", `{"policy":"mine","name":"v"}`)
	other := strings.NewReplacer(`"policy":"p"`, `"policy":"mine"`, `"p.v"`, `"mine.v"`).Replace(importedVolume)
	if code, body := h.do(t, "POST", "/v1/import/volumes/mine/v", other); code != 409 {
		t.Errorf("import over another volume: %d %s", code, body)
	}
}
