package volmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/storage"
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

// Volmasters that start at once with --auth on one etcd make one admin
// token between them, not one each: the first writes its file, the others
// find the token and write none.
func TestBootstrapOnceAmongVolmasters(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	ctx := context.Background()
	for round := range 5 {
		keys, _ := config.NewKeys(fmt.Sprintf("/round%d", round))
		dir := t.TempDir()
		var servers []*Server
		for range 4 {
			srv, _ := serve(t, Config{Client: cli, Keys: keys, Backends: map[string]storage.CRUD{}})
			servers = append(servers, srv)
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(servers))
		for i, srv := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- srv.Bootstrap(ctx, filepath.Join(dir, fmt.Sprintf("admin%d.token", i)))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		ts, err := servers[0].Store().ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.token"))
		if len(ts) != 1 || len(files) != 1 {
			t.Fatalf("round %d: %d tokens and token files %v after 4 volmasters bootstrapped at once; want one of each", round, len(ts), files)
		}
	}
}
