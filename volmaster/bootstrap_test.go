package volmaster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// The bootstrap token goes only into a file it creates: an existing file
// (whatever its owner and mode) or a symlink planted at the path is refused,
// left as it was, and no token is made; a new file is 0600 whatever the
// umask.
func TestBootstrapCreatesItsOwnFile(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	dir := t.TempDir()
	tokens := func() int {
		ts, err := h.srv.Store().ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ts)
	}

	planted := filepath.Join(dir, "planted")
	if err := os.WriteFile(planted, []byte("attacker's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{planted, link} {
		err := h.srv.Bootstrap(ctx, path)
		if err == nil || !strings.Contains(err.Error(), "exists already") {
			t.Errorf("Bootstrap into existing %s = %v, want refused", path, err)
		}
	}
	if b, _ := os.ReadFile(planted); string(b) != "attacker's\n" {
		t.Errorf("planted file now holds %q", b)
	}
	if fi, _ := os.Stat(planted); fi.Mode().Perm() != 0o644 {
		t.Errorf("planted file mode changed to %v", fi.Mode().Perm())
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the symlink's target was created: %v", err)
	}
	if n := tokens(); n != 0 {
		t.Fatalf("%d tokens after refused bootstraps, want 0", n)
	}

	old := umask(0)
	defer umask(old)
	path := filepath.Join(dir, "admin.token")
	if err := h.srv.Bootstrap(ctx, path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap file %v, %v; want mode 0600", fi, err)
	}
	ts, _ := h.srv.Store().ListTokens(ctx)
	if len(ts) != 1 || ts[0].Role != config.RoleAdmin {
		t.Fatalf("tokens after bootstrap = %+v, want one admin", ts)
	}
	// With an admin token, a restart leaves the file alone.
	if err := h.srv.Bootstrap(ctx, path); err != nil || tokens() != 1 {
		t.Fatalf("second Bootstrap = %v with %d tokens, want a no-op", err, tokens())
	}
}
