package volmaster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/volplugin/volplugin/config"
)

// Fuzz targets for request decoding through the real handlers, against one
// volmaster with embedded etcd per fuzz process (each fuzz worker builds its
// own). Requests go straight to Handler() through httptest.NewRecorder.

const nfsPolicy = `{"backend":"nfs","driver":{"options":{"source":"host:/export"}}}`

type fuzzServer struct {
	*harness
	handler http.Handler
}

func startFuzz(f *testing.F) *fuzzServer {
	f.Helper()
	h := start(f)
	fs := &fuzzServer{harness: h, handler: h.srv.Handler()}
	return fs
}

func (fs *fuzzServer) serve(t testing.TB, method, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	fs.handler.ServeHTTP(rec, req)
	return rec
}

func (fs *fuzzServer) must(t testing.TB, want int, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := fs.serve(t, method, path, []byte(body))
	if rec.Code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
	return rec
}

// etcdRev is etcd's store revision, which any write anywhere increments.
func (fs *fuzzServer) etcdRev(t testing.TB) int64 {
	t.Helper()
	st := fs.srv.Store()
	resp, err := st.Client().Get(context.Background(), st.Keys().Schema(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// state returns what Store().Dump returns (every key under the prefix) and
// the etcd revision it was read at, in one round trip.
func (fs *fuzzServer) state(t testing.TB) (map[string]string, int64) {
	t.Helper()
	st := fs.srv.Store()
	resp, err := st.Client().Get(context.Background(), st.Keys().All(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

// checkError asserts an error response: a JSON {"error","code"} body (and
// nothing else) whose code matches the status.
func checkError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with Content-Type %q", rec.Code, ct)
	}
	var eb config.ErrorBody
	if err := config.DecodeStrict(bytes.NewReader(rec.Body.Bytes()), &eb); err != nil || eb.Error == "" {
		t.Fatalf("status %d with body %q, want JSON {\"error\",\"code\"}: %v", rec.Code, rec.Body, err)
	}
	known := config.CodeError(eb.Code) != nil || eb.Code == config.CodeInternal
	if want := statusOf(config.CodeError(eb.Code)); !known || want != rec.Code {
		t.Fatalf("status %d with code %q: %s", rec.Code, eb.Code, rec.Body)
	}
}

// knownPolicies are uploaded before fuzzing; any other policy is missing.
var knownPolicies = map[string]bool{"fz": true, "nfs1": true}

func FuzzCreateVolumeRequest(f *testing.F) {
	for _, s := range []string{
		`{"policy":"fz","name":"v"}`,
		`{"policy":"nfs1","name":"v"}`,
		`{"policy":"fz","name":"v","options":{"size":"20MB","filesystem":"xfs","snapshots":"true","snapshot.frequency":"1h","snapshot.keep":"3"}}`,
		`{"policy":"fz","name":"v","options":{"rate-limit.read-bps":"1MB","rate-limit.write-bps":"10","rate-limit.read-iops":"5","rate-limit.write-iops":"18446744073709551615","ephemeral":"1"}}`,
		`{"policy":"nfs1","name":"v","options":{"size":"1MB"}}`,
		`{"policy":"fz","name":"v","options":{"snapshots":"true"}}`,
		`{"policy":"fz","name":"v","options":{"size":"1EB"}}`,
		`{"policy":"fz","name":"v","options":{"size":"1024PB"}}`,
		`{"policy":"fz","name":"v","options":{"filesystem":"btrfs"}}`,
		`{"policy":"fz","name":"v","options":{"colour":"red"}}`,
		`{"policy":"fz","name":"v","options":null}`,
		`{"policy":"nope","name":"v"}`,
		`{"policy":"fz","name":"a/b"}`,
		`{"policy":"fz","name":".."}`,
		`{"policy":"fz","name":"v\u00e9"}`,
		`{"policy":"fz","name":"v"}{}`,
		`{"policy":"fz","name":"v","bogus":true}`,
		`{"policy":"fz","name":"v"`,
		`{"policy":"fz","name":1}`,
		`[]`, `null`, ``, ` `,
	} {
		f.Add([]byte(s))
	}
	fs := startFuzz(f)
	fs.must(f, 200, "PUT", "/v1/policies/fz", localPolicy)
	fs.must(f, 200, "PUT", "/v1/policies/nfs1", nfsPolicy)

	f.Fuzz(func(t *testing.T, body []byte) {
		before, rev := fs.state(t)
		rec := fs.serve(t, "POST", "/v1/volumes", body)

		// What the handler should decide, worked out independently.
		var req config.VolumeRequest
		want := 0
		ref := config.VolumeRef{}
		if err := config.DecodeStrict(bytes.NewReader(body), &req); err != nil {
			want = 400
		} else if ref = (config.VolumeRef{Policy: req.Policy, Name: req.Name}); ref.Validate() != nil {
			want = 400
		} else if !knownPolicies[req.Policy] {
			want = 404
		}

		switch {
		case rec.Code == 201, rec.Code == 400, rec.Code == 404, rec.Code == 409:
		default:
			t.Fatalf("POST /v1/volumes %q: status %d: %s", body, rec.Code, rec.Body)
		}
		if want != 0 && rec.Code != want {
			t.Fatalf("POST /v1/volumes %q: status %d, want %d: %s", body, rec.Code, want, rec.Body)
		}
		if rec.Code >= 400 {
			checkError(t, rec)
			after, r := fs.state(t)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("POST /v1/volumes %q = %d changed etcd:\nbefore %v\nafter  %v", body, rec.Code, before, after)
			}
			// Input rejected by validation must not even reach etcd. A
			// create the backend refuses (a size its filesystem cannot
			// hold: a 400 with want unknown) writes and rolls back, so only
			// the Dump comparison above applies to it.
			if want != 0 && r != rev {
				t.Fatalf("POST /v1/volumes %q = %d wrote to etcd (revision %d -> %d)", body, rec.Code, rev, r)
			}
			return
		}

		// 201: the record is the one asked for, readable, and removable
		// without a trace.
		var v config.Volume
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.Ref() != ref {
			t.Fatalf("201 body %s for request %s: %v", rec.Body, body, err)
		}
		path := "/v1/volumes/" + ref.Policy + "/" + ref.Name
		fs.must(t, 200, "GET", path, "")
		// Into the trash (an ephemeral volume is destroyed: 204), and the
		// trash entry purged: then nothing of it is left.
		if del := fs.serve(t, "DELETE", path, nil); del.Code == 200 {
			var e config.TrashEntry
			if err := json.Unmarshal(del.Body.Bytes(), &e); err != nil {
				t.Fatalf("DELETE %s answered %s: %v", path, del.Body, err)
			}
			fs.must(t, 204, "DELETE", "/v1/trash/"+ref.Policy+"/"+ref.Name+"/"+e.ID, "")
		} else if del.Code != 204 {
			t.Fatalf("DELETE %s: %d %s", path, del.Code, del.Body)
		}
		// DELETE does not wait for the read cache (unlike POST), so a GET
		// right after it may still see the volume: require 404 eventually.
		deadline := time.Now().Add(5 * time.Second)
		for fs.serve(t, "GET", path, nil).Code != 404 {
			if time.Now().After(deadline) {
				t.Fatalf("GET %s still finds the volume 5s after DELETE", path)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		if after, _ := fs.state(t); !reflect.DeepEqual(before, after) {
			t.Fatalf("create+remove of %s left etcd changed:\nbefore %v\nafter  %v", ref, before, after)
		}
		img := filepath.Join(fs.dataDir, "images", ref.Policy, ref.Name+".img")
		if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("image %s after remove: %v", img, err)
		}
	})
}

// nilMaps replaces empty maps by nil: an empty "filesystems" or
// "driver.options" object does not survive omitempty, with the same meaning.
func nilMaps(p config.Policy) config.Policy {
	if len(p.FileSystems) == 0 {
		p.FileSystems = nil
	}
	if len(p.Driver.Options) == 0 {
		p.Driver.Options = nil
	}
	return p
}

func FuzzPutPolicyRequest(f *testing.F) {
	for _, s := range []string{
		localPolicy,
		nfsPolicy,
		`{"backend":"ceph","create":{"size":"1GiB","filesystem":"xfs"},"driver":{"pool":"rbd","options":{"user":"admin"}}}`,
		`{"backends":{"crud":"local","mount":"local","snapshot":"local"},"create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"30m","keep":20}}}`,
		`{"backend":"local","create":{"size":"10MB","filesystem":"btrfs"},"filesystems":{"btrfs":"mkfs.btrfs %"}}`,
		`{"backend":"local","create":{"size":"10MB"},"filesystems":{},"driver":{"options":{}}}`,
		`{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"720h"},"unlocked":true,"ephemeral":true}`,
		`{"name":"other","backend":"local","create":{"size":"10MB"}}`,
		`{"backend":"local","create":{"size":"0"}}`,
		`{"backend":"local","create":{"size":"10MB"},"extra":1}`,
		`{"backend":"local","create":{"size":"10MB"}`,
		`{"backend":"local"}`,
		`{"backend":"nfs","backends":{"crud":"nfs","mount":"nfs"}}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	fs := startFuzz(f)
	keys := fs.srv.Store().Keys()
	policyKeys := func(t testing.TB) map[string]string {
		t.Helper()
		resp, err := fs.srv.Store().Client().Get(context.Background(), keys.Policies(), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return out
	}
	var lastRev int64

	f.Fuzz(func(t *testing.T, body []byte) {
		// Revisions accumulate with every 200, so compare the current
		// policies (small) and etcd's revision rather than a full Dump.
		before := policyKeys(t)
		rev := fs.etcdRev(t)
		rec := fs.serve(t, "PUT", "/v1/policies/fz", body)
		p, derr := config.DecodePolicy("fz", body)

		switch rec.Code {
		case 200:
			if derr != nil {
				t.Fatalf("PUT %q = 200, but DecodePolicy says %v", body, derr)
			}
		case 400:
			if derr == nil {
				t.Fatalf("PUT %q = 400 (%s), but DecodePolicy accepts it", body, rec.Body)
			}
			checkError(t, rec)
			if after := policyKeys(t); !reflect.DeepEqual(before, after) {
				t.Fatalf("PUT %q = 400 changed the policies:\nbefore %v\nafter  %v", body, before, after)
			}
			// Rejected input must not even reach etcd (a create that fails
			// in the backend writes and rolls back, hence only Dump above).
			if r := fs.etcdRev(t); (rec.Code == 400 || rec.Code == 404) && r != rev {
				t.Fatalf("PUT %q = 400 wrote to etcd (revision %d -> %d)", body, rev, r)
			}
			return
		default:
			t.Fatalf("PUT %q: status %d: %s", body, rec.Code, rec.Body)
		}

		// 200: the stored policy is the decoded one, under a new revision.
		var got config.Policy
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || !reflect.DeepEqual(nilMaps(got), nilMaps(p)) {
			t.Fatalf("PUT %q returned %s, want %+v (%v)", body, rec.Body, p, err)
		}
		n, err := strconv.ParseInt(rec.Header().Get(config.PolicyRevisionHeader), 10, 64)
		if err != nil || n <= lastRev {
			t.Fatalf("revision header %q after %d", rec.Header().Get(config.PolicyRevisionHeader), lastRev)
		}
		lastRev = n
		gr := fs.must(t, 200, "GET", "/v1/policies/fz", "")
		if !bytes.Equal(gr.Body.Bytes(), rec.Body.Bytes()) || gr.Header().Get(config.PolicyRevisionHeader) != rec.Header().Get(config.PolicyRevisionHeader) {
			t.Fatalf("GET after PUT = %s (rev %s), PUT returned %s (rev %s)", gr.Body, gr.Header().Get(config.PolicyRevisionHeader),
				rec.Body, rec.Header().Get(config.PolicyRevisionHeader))
		}
	})
}
