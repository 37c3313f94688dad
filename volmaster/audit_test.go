package volmaster

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
)

// 2,000 unauthenticated requests (twice the ring) do not flush the real
// audit entries out: refusals have their own ring and counter, and at most a
// burst of them reaches the log. Every entry names its client and token; the
// audit file gets each entry and follows a logrotate move.
func TestAuditSurvivesRefusalFloodAndRotates(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys, _ := config.NewKeys("")
	file := filepath.Join(t.TempDir(), "audit.log")
	srv, url := serve(t, Config{Client: cli, Keys: keys, Auth: true, AuditFile: file})
	t.Cleanup(func() { _ = srv.audit.file.Close() })
	ctx := context.Background()
	admin, err := srv.Store().CreateToken(ctx, config.TokenRequest{Role: config.RoleAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	send := func(tok, method, path, body string) int {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send(admin.Secret, "PUT", "/v1/policies/p", localPolicy); code != 200 {
		t.Fatalf("policy upload = %d", code)
	}
	for range 2000 {
		send("", "PUT", "/v1/policies/x", localPolicy)
	}
	var audit, refused []config.AuditEntry
	get := func(path string, out any) {
		req, _ := http.NewRequest("GET", url+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	get("/v1/audit", &audit)
	get("/v1/audit?refused=true", &refused)
	if len(audit) != 1 || audit[0].Route != "/v1/policies/{policy}" || audit[0].Who != admin.ID || audit[0].Client != "127.0.0.1" {
		t.Fatalf("audit after the flood = %+v, want the one policy upload by %s from 127.0.0.1", audit, admin.ID)
	}
	if len(refused) != 1000 || refused[0].Who != "unauthenticated" || refused[0].Status != 401 {
		t.Fatalf("refused ring holds %d entries (first %+v), want the last 1000 refusals", len(refused), refused[0])
	}
	n, notLogged := srv.audit.refusals()
	if n != 2000 || notLogged < 1900 {
		t.Errorf("refusals counted %d, not logged %d; want 2000 counted and all but a burst left out of the log", n, notLogged)
	}

	lines := func(path string) []config.AuditEntry {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []config.AuditEntry
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e config.AuditEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("audit file line %q: %v", sc.Text(), err)
			}
			out = append(out, e)
		}
		return out
	}
	before := lines(file)
	if len(before) < 2 || len(before) > 100 || before[0].Route != "/v1/policies/{policy}" {
		t.Fatalf("audit file has %d lines (first %+v), want the upload and a burst of refusals", len(before), before)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	// logrotate moves the file away; the next entry goes to a new one.
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	if code := send(admin.Secret, "DELETE", "/v1/policies/p", ""); code != 204 {
		t.Fatalf("policy delete = %d", code)
	}
	if after := lines(file); len(after) != 1 || after[0].Method != "DELETE" {
		t.Errorf("new audit file after rotation = %+v, want the delete", after)
	}
	if len(lines(file+".1")) != len(before) {
		t.Error("the rotated file changed after the move")
	}
}
