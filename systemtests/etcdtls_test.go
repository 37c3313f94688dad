package systemtests

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/internal/testpki"
)

// refusedWithin bounds how long a daemon may take to give up on an etcd
// whose TLS it cannot pass. The etcd client alone would wait out a 10s
// timeout and say only "context deadline exceeded"; well below that, the
// daemon must have failed on the handshake itself.
const refusedWithin = 8 * time.Second

// runToExit runs a daemon binary that is expected to fail and returns its
// output, exit code and run time. A daemon still running after a minute is
// a hang: it is killed and the test fails.
func runToExit(t *testing.T, name string, args ...string) (string, int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, name), args...).CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("%s %v still running after %s (killed)\n%s", name, args, took, out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), code, took
}

func volmasterArgs(dir, etcd string, flags ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--data-dir", dir, "--mount-root", filepath.Join(dir, "mnt"), "--etcd", etcd}, flags...)
}

func volsupervisorArgs(dir, etcd, name string, flags ...string) []string {
	return append([]string{"--etcd", etcd, "--name", name, "--listen", "",
		"--local-data-dir", filepath.Join(dir, "local"), "--mount-root", filepath.Join(dir, "mnt")}, flags...)
}

// volmaster and volsupervisor against an etcd that serves its clients over
// TLS and requires client certificates: without the right CA or without a
// client certificate both fail at once with the TLS reason; with the CA and
// a client certificate volmaster stores policies and volumes in that etcd and
// volsupervisor becomes leader.
func TestEtcdMutualTLS(t *testing.T) {
	p := testpki.New(t, t.TempDir())
	etcd, eps := etcdtest.StartWith(t, etcdtest.Options{TLS: &p, ClientCertAuth: true})
	url := eps[0]
	cert := []string{"--etcd-cert", p.ClientCert, "--etcd-key", p.ClientKey}

	for _, tc := range []struct {
		name  string
		url   string
		flags []string
		want  string
	}{
		{"no CA", url, cert, "certificate signed by unknown authority"},
		{"wrong CA", url, append([]string{"--etcd-ca", p.OtherCA}, cert...), "certificate signed by unknown authority"},
		{"no client certificate", url, []string{"--etcd-ca", p.CA}, "certificate required"},
		{"client certificate of another CA", url, []string{"--etcd-ca", p.CA, "--etcd-cert", p.OtherClientCert, "--etcd-key", p.OtherClientKey}, "certificate required"},
		// The etcd client would silently drop TLS for an http:// URL.
		{"TLS flags with an http URL", "http" + strings.TrimPrefix(url, "https"), append([]string{"--etcd-ca", p.CA}, cert...), "need https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, args := range map[string][]string{
				"volmaster":     volmasterArgs(dir, tc.url, tc.flags...),
				"volsupervisor": volsupervisorArgs(dir, tc.url, "s", tc.flags...),
			} {
				out, code, took := runToExit(t, name, args...)
				if code != 1 || !strings.Contains(out, tc.want) {
					t.Errorf("%s: exit %d, want 1 with %q:\n%s", name, code, tc.want, out)
				}
				if took > refusedWithin {
					t.Errorf("%s took %s to fail, want < %s", name, took.Round(time.Millisecond), refusedWithin)
				}
			}
		})
	}

	data := t.TempDir()
	flags := append([]string{"--etcd-ca", p.CA}, cert...)
	vm := startVolmaster(t, data, append([]string{"--etcd", url}, flags...)...)
	if vm.EtcdURL != url {
		t.Fatalf("volmaster uses etcd %s, want %s", vm.EtcdURL, url)
	}
	policy := `{"backend":"local","create":{"size":"8MB"}}`
	if _, e, code := volcli(t, vm.URL, policy, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if _, e, code := volcli(t, vm.URL, "", "volume", "create", "p/v"); code != 0 {
		t.Fatalf("volume create: %s", e)
	}
	// The records are in the TLS etcd (read with the test's own client).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, key := range []string{"/volplugin/policies/p", "/volplugin/volumes/p/v", "/volplugin/schema"} {
		resp, err := etcd.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Errorf("TLS etcd %s: %v, %v", key, resp, err)
		}
	}

	startProc(t, "volsupervisor", volsupervisorArgs(data, url, "s1", flags...), "volsupervisor")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, _ := volcli(t, vm.URL, "", "supervisor", "status")
		if strings.Contains(out, "s1\tLEADER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volsupervisor s1 not leader after 20s; volcli supervisor status:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// An etcd with server-side TLS only: the CA is all the daemons need, and a
// missing one is refused at once.
func TestEtcdServerTLS(t *testing.T) {
	p := testpki.New(t, t.TempDir())
	_, eps := etcdtest.StartWith(t, etcdtest.Options{TLS: &p})
	url := eps[0]
	out, code, took := runToExit(t, "volmaster", volmasterArgs(t.TempDir(), url)...)
	if code != 1 || !strings.Contains(out, "--etcd-ca") || took > refusedWithin {
		t.Errorf("volmaster without --etcd-ca: exit %d after %s:\n%s", code, took, out)
	}
	vm := startVolmaster(t, t.TempDir(), "--etcd", url, "--etcd-ca", p.CA)
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"8MB"}}`, "policy", "upload", "p"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	if out, e, code := volcli(t, vm.URL, "", "policy", "list"); code != 0 || strings.TrimSpace(out) != "p" {
		t.Fatalf("policy list: %q %s", out, e)
	}
}
