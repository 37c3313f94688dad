package systemtests

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// attackEnv names the action TestAttackerHelper performs, as user nobody.
const attackEnv = "VOLPLUGIN_ATTACK"

// TestAttackerHelper is what TestUnprivilegedUserIsRefused runs as user
// nobody, one action per run; run by itself it does nothing.
func TestAttackerHelper(t *testing.T) {
	action, arg := os.Getenv(attackEnv), os.Getenv(attackEnv+"_ARG")
	if action == "" {
		t.Skip("run by TestUnprivilegedUserIsRefused as an unprivileged user")
	}
	var err error
	switch action {
	case "read":
		_, err = os.ReadFile(arg)
	case "list":
		_, err = os.ReadDir(arg)
	case "socket":
		var c net.Conn
		if c, err = net.DialTimeout("unix", arg, 3*time.Second); err == nil {
			c.Close()
		}
	case "http":
		var resp *http.Response
		if resp, err = (&http.Client{Timeout: 5 * time.Second}).Get(arg); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
	case "etcd":
		// Write an admin token record, trusting any server certificate.
		var cli *clientv3.Client
		cli, err = clientv3.New(clientv3.Config{Endpoints: []string{arg}, DialTimeout: 3 * time.Second,
			TLS: &tls.Config{InsecureSkipVerify: true}, Logger: zap.NewNop()})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err = cli.Put(ctx, "/volplugin/tokens/0123456789abcdef", `{"id":"0123456789abcdef","role":"admin","hash":"x"}`)
			cancel()
			cli.Close()
		}
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fmt.Printf("ATTACK REFUSED: %v\n", err)
		return
	}
	fmt.Println("ATTACK SUCCEEDED")
}

// An unprivileged local user (nobody, through setpriv) gets nothing from a
// volplugin host run as documented with --auth: not the bootstrap token, not
// the embedded etcd (its keys, or a write without a certificate), not the
// mount root or a mounted volume's files, not the plugin socket, not
// volmaster's, volplugin's or volsupervisor's /metrics. A world-readable file is read, so a
// refusal is the files' and daemons' doing.
func TestUnprivilegedUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run an action as another user and to mount")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skipf("needs setpriv: %v", err)
	}
	// Every directory down to the data dir is traversable, so only the
	// daemons' own modes stand in the way.
	data := t.TempDir()
	for d := data; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(data, "attacker.test")
	if out, err := exec.Command("cp", self, bin).CombinedOutput(); err != nil {
		t.Fatalf("copy the test binary: %v %s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	attack := func(action, arg string) string {
		t.Helper()
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", bin, "-test.run=^TestAttackerHelper$", "-test.v")
		cmd.Env = append(os.Environ(), attackEnv+"="+action, attackEnv+"_ARG="+arg)
		out, _ := cmd.CombinedOutput()
		switch {
		case strings.Contains(string(out), "ATTACK SUCCEEDED"):
			return "succeeded"
		case strings.Contains(string(out), "ATTACK REFUSED"):
			return "refused"
		}
		t.Fatalf("attack %s %s did not run:\n%s", action, arg, out)
		return ""
	}
	if got := attack("read", "/etc/passwd"); got != "succeeded" {
		t.Fatalf("control: nobody cannot read /etc/passwd (%s): the harness is broken", got)
	}

	vm := startVolmaster(t, data, "--auth")
	admin := strings.TrimSpace(readFile(t, filepath.Join(data, "admin.token")))
	if _, e, code := volcli(t, vm.URL, `{"backend":"local","create":{"size":"16MB"}}`, "--token", admin, "policy", "upload", "policy1"); code != 0 {
		t.Fatalf("policy upload: %s", e)
	}
	hostTok, e, code := volcli(t, vm.URL, "", "--token", admin, "token", "create", "--role", "host", "--host", "hostA", "--policy", "policy1")
	if code != 0 {
		t.Fatalf("host token: %s", e)
	}
	tokFile, metricsTok := filepath.Join(data, "host.token"), filepath.Join(data, "metrics.token")
	writeFile(t, tokFile, hostTok)
	writeFile(t, metricsTok, "scrape-secret\n")
	sockDir := filepath.Join(data, "plugins")
	vp := startVolplugin(t, vm, data, "vpsys-attack", "hostA", "--socket-dir", sockDir, "--token-file", tokFile,
		"--metrics-token-file", metricsTok)
	pc := newPluginClient(vp.lines["volplugin socket"])
	if e, _ := pc.call(t, "Create", `{"Name":"policy1/v"}`)["Err"].(string); e != "" {
		t.Fatalf("create: %s", e)
	}
	out := pc.call(t, "Mount", `{"Name":"policy1/v","ID":"m1"}`)
	mnt, _ := out["Mountpoint"].(string)
	if mnt == "" {
		t.Fatalf("mount: %v", out)
	}
	t.Cleanup(func() { pc.call(t, "Unmount", `{"Name":"policy1/v","ID":"m1"}`) })
	writeFile(t, filepath.Join(mnt, "secret"), "tenant data\n")
	sup := filepath.Join(data, "sup")
	if out, err := exec.Command(filepath.Join(binDir, "volmaster"), "etcd-client-cert", "--data-dir", data, "--name", "sup", "--out", sup).CombinedOutput(); err != nil {
		t.Fatalf("volmaster etcd-client-cert: %v\n%s", err, out)
	}
	vs := startProc(t, "volsupervisor", []string{"--etcd", vm.EtcdURL, "--etcd-ca", filepath.Join(sup, "ca.crt"),
		"--etcd-cert", filepath.Join(sup, "sup.crt"), "--etcd-key", filepath.Join(sup, "sup.key"), "--name", "s1",
		"--listen", "127.0.0.1:0", "--metrics-token-file", metricsTok,
		"--local-data-dir", filepath.Join(data, "local"), "--mount-root", filepath.Join(data, "mnt")}, "volsupervisor status", "volsupervisor")
	supInfo := vs.lines["volsupervisor status"]

	for _, a := range []struct{ what, action, arg string }{
		{"the bootstrap admin token", "read", filepath.Join(data, "admin.token")},
		{"volmaster's etcd client key", "read", filepath.Join(data, "etcd-pki", "volmaster.key")},
		{"the etcd CA's key", "read", filepath.Join(data, "etcd-pki", "ca.key")},
		{"a write into the embedded etcd", "etcd", vm.EtcdURL},
		{"the mount root", "list", filepath.Dir(filepath.Dir(mnt))},
		{"a mounted volume's file", "read", filepath.Join(mnt, "secret")},
		{"the plugin socket", "socket", vp.lines["volplugin socket"]},
		{"volmaster's /metrics", "http", vm.URL + "/metrics"},
		{"volplugin's /metrics", "http", vp.lines["volplugin metrics"]},
		{"volsupervisor's /metrics", "http", strings.TrimSuffix(supInfo, "/info") + "/metrics"},
		{"volsupervisor's /info", "http", supInfo},
	} {
		if got := attack(a.action, a.arg); got != "refused" {
			t.Errorf("nobody got %s (%s %s)", a.what, a.action, a.arg)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
