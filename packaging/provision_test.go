package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// provision runs scripts/provision --dry-run for n, writing its files under
// dir, and returns the commands it plans, one argv each.
func provision(t *testing.T, src, dir string, n node, masterIP string) [][]string {
	t.Helper()
	role := "host"
	if n.master {
		role = "master"
	}
	args := []string{"--dry-run", "--root", dir, n.name, "--role", role, "--ip", n.ip, "--master-ip", masterIP, "--src", src}
	cmd := exec.Command(filepath.Join(root, "scripts/provision"), args...)
	cmd.Env = append(os.Environ(), "VOLPLUGIN_CLUSTER_SECRET="+secret)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/provision %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	var plan [][]string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "+ "); ok {
			plan = append(plan, strings.Fields(rest))
		} else if line != "" {
			t.Errorf("scripts/provision printed %q, not a planned step", line)
		}
	}
	return plan
}

// ciCommands returns the project commands CI runs (make test, per .ci/run):
// "make TARGET" and "scripts/NAME SUBCOMMAND", found in the Makefile's
// rules from the targets .ci/run makes, and in the Go tests' sources (the
// tests that make test runs call scripts/docker-dev install and make
// install).
func ciCommands(t *testing.T) map[string]bool {
	t.Helper()
	mk := readFile(t, filepath.Join(root, "Makefile"))
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+)\s*[:?]?=\s*(.*)$`).FindAllStringSubmatch(mk, -1) {
		vars[m[1]] = strings.TrimSpace(m[2])
	}
	// Rules: target -> prerequisites and the recipe (continuations joined).
	prereqs, recipes := map[string][]string{}, map[string]string{}
	joined := strings.ReplaceAll(mk, "\\\n", " ")
	var cur string
	for _, line := range strings.Split(joined, "\n") {
		if m := regexp.MustCompile(`^([a-z][a-z-]*):(?:[^=]|$)(.*)$`).FindStringSubmatch(line); m != nil {
			cur = m[1]
			prereqs[cur] = strings.Fields(strings.TrimPrefix(line, cur+":"))
			continue
		}
		if strings.HasPrefix(line, "\t") && cur != "" {
			recipes[cur] += line + "\n"
		} else if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
			cur = ""
		}
	}
	expand := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	script := regexp.MustCompile(`(?:^|[\s@;'"(])(scripts/[A-Za-z0-9._-]+)(?:\s+([a-z][a-z-]*))?`)
	ci := map[string]bool{}
	var walk func(target string)
	walk = func(target string) {
		if ci["make "+target] {
			return
		}
		ci["make "+target] = true
		for _, p := range prereqs[target] {
			walk(p)
		}
		recipe := expand.ReplaceAllStringFunc(recipes[target], func(v string) string { return vars[v[2:len(v)-1]] })
		for _, m := range script.FindAllStringSubmatch(recipe, -1) {
			ci[strings.TrimSpace(m[1]+" "+m[2])] = true
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^make ([a-z-]+)`).FindAllStringSubmatch(readFile(t, filepath.Join(root, ".ci/run")), -1) {
		walk(m[1])
	}
	if !ci["make test"] {
		t.Fatal(".ci/run does not run make test")
	}
	// Go sources outside this package that run a script with a subcommand.
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != root || p == filepath.Join(root, "packaging")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		if strings.Contains(s, `"docker-dev"`) && strings.Contains(s, `script, "install")`) {
			ci["scripts/docker-dev install"] = true
		}
		if strings.HasSuffix(p, "_test.go") && strings.Contains(s, `exec.Command("make"`) && strings.Contains(s, `"install"}`) {
			ci["make install"] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// checkPlan checks the commands scripts/provision plans for n.
func checkPlan(t *testing.T, src, dir string, n node, plan [][]string, ci map[string]bool) {
	var project []string // the project commands it runs: "make T", "scripts/X SUB"
	var units []string   // the systemd units it starts
	for _, argv := range plan {
		if argv[0] == "write" {
			if _, err := os.Stat(filepath.Join(dir, argv[1])); err != nil {
				t.Errorf("planned to write %s but did not: %v", argv[1], err)
			}
			continue
		}
		switch {
		case argv[0] == "make":
			if len(argv) < 4 || argv[1] != "-C" || argv[2] != src {
				t.Errorf("runs %q, not make -C SRC TARGET", strings.Join(argv, " "))
				continue
			}
			project = append(project, "make "+argv[3])
		case strings.HasPrefix(argv[0], src+"/"):
			project = append(project, scriptCommand(t, src, argv))
		case argv[0] == "systemctl":
			for _, a := range argv[1:] {
				if strings.HasSuffix(a, ".service") {
					units = append(units, a)
				}
			}
		}
	}
	// The units it starts: packaging's (make install), docker.io's, or one
	// it writes; for the latter, what they run.
	for _, u := range units {
		if _, err := os.Stat(filepath.Join(root, "packaging/systemd", u)); err == nil || u == "docker.service" {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, "etc/systemd/system", u))
		if err != nil {
			t.Errorf("starts %s, which neither packaging/systemd nor docker.io has nor it writes", u)
			continue
		}
		for _, m := range regexp.MustCompile(`(?m)^Exec[A-Za-z]*=(.*)$`).FindAllStringSubmatch(string(text), -1) {
			argv := strings.Fields(m[1])
			if !strings.HasPrefix(argv[0], src+"/") {
				t.Errorf("%s runs %s, not a script of --src %s", u, argv[0], src)
				continue
			}
			project = append(project, scriptCommand(t, src, argv))
		}
		for _, m := range regexp.MustCompile(`(?m)^EnvironmentFile=-?(.*)$`).FindAllStringSubmatch(string(text), -1) {
			if _, err := os.Stat(filepath.Join(dir, m[1])); err != nil {
				t.Errorf("%s reads %s, which provision does not write", u, m[1])
			}
		}
		if sa, err := exec.LookPath("systemd-analyze"); err == nil {
			if out, err := exec.Command(sa, "verify", filepath.Join(dir, "etc/systemd/system", u)).CombinedOutput(); err != nil || bytes.Contains(out, []byte(u)) {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		}
	}
	want := []string{"make build", "make install", "scripts/docker-dev install"}
	wantUnits := []string{"volplugin.service"}
	if n.master {
		want = append(want, "scripts/ceph-dev up")
		wantUnits = append(wantUnits, "volmaster.service", "volsupervisor.service")
	}
	for _, w := range want {
		if !slices.Contains(project, w) {
			t.Errorf("provisioning %s does not run %s; it runs %v", n.name, w, project)
		}
	}
	for _, w := range wantUnits {
		if !slices.Contains(units, w) {
			t.Errorf("provisioning %s does not start %s; it starts %v", n.name, w, units)
		}
	}
	for _, p := range project {
		if !ci[p] {
			t.Errorf("provisioning %s runs %q, which CI (make test) never runs; CI runs %v", n.name, p, sortedKeys(ci))
		}
	}
}

// scriptCommand checks that argv runs an executable project script and
// returns "scripts/NAME SUBCOMMAND".
func scriptCommand(t *testing.T, src string, argv []string) string {
	t.Helper()
	rel := strings.TrimPrefix(argv[0], src+"/")
	checkExecutable(t, filepath.Join(root, rel))
	if len(argv) > 1 && !strings.HasPrefix(argv[1], "-") {
		return rel + " " + argv[1]
	}
	return rel
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// envFile parses a systemd EnvironmentFile as scripts/provision and
// packaging write them: VAR=value or VAR="value" lines and comments.
func envFile(t *testing.T, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, p)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is no VAR=value line", p, line)
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	return out
}

// daemonFlags returns the names of the cli flags cmd/NAME/main.go defines
// (&cli.XFlag{Name: "..."}).
func daemonFlags(t *testing.T, daemon string) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "cmd", daemon, "main.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if sel, ok := lit.Type.(*ast.SelectorExpr); !ok || !strings.HasSuffix(sel.Sel.Name, "Flag") {
			return true
		}
		for _, e := range lit.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
					if s, ok := kv.Value.(*ast.BasicLit); ok && s.Kind == token.STRING {
						name, _ := strconv.Unquote(s.Value)
						names[name] = true
					}
				}
			}
		}
		return true
	})
	if len(names) == 0 {
		t.Fatalf("no flags found in cmd/%s/main.go", daemon)
	}
	return names
}

// checkEnvFiles checks the env files provision writes for the packaged units:
// the variables of packaging's samples, flags the daemons have, files that
// exist and addresses of the master.
func checkEnvFiles(t *testing.T, dir string, n node, masterIP string) {
	daemons := []string{"volplugin"}
	if n.master {
		daemons = append(daemons, "volmaster", "volsupervisor")
	}
	for _, d := range daemons {
		p := filepath.Join(dir, "etc/volplugin", d+".env")
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s gets no %s.env: %v", n.name, d, err)
			continue
		}
		got, sample := envFile(t, p), envFile(t, filepath.Join(root, "packaging/etc/volplugin", d+".env"))
		if !slices.Equal(sortedKeys(boolKeys(got)), sortedKeys(boolKeys(sample))) {
			t.Errorf("%s.env sets %v, packaging's sample %v", d, sortedKeys(boolKeys(got)), sortedKeys(boolKeys(sample)))
		}
		opts := strings.Fields(got[strings.ToUpper(d)+"_OPTS"])
		flags := daemonFlags(t, d)
		for i, o := range opts {
			name, ok := strings.CutPrefix(o, "--")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, "=")
			if !flags[name] {
				t.Errorf("%s.env: %s has no flag --%s", d, d, name)
				continue
			}
			if i+1 >= len(opts) {
				continue
			}
			val := opts[i+1]
			switch name {
			case "ceph-conf":
				if _, err := os.Stat(filepath.Join(dir, val)); err != nil {
					t.Errorf("%s.env: --ceph-conf %s is not written by provision", d, val)
				}
			case "volmaster", "etcd", "etcd-listen", "listen":
				host := val
				if u, err := url.Parse(val); err == nil && u.Host != "" {
					host = u.Host
				}
				if !strings.HasPrefix(host, masterIP+":") {
					t.Errorf("%s.env: --%s %s is not on the master's address %s", d, name, val, masterIP)
				}
			}
		}
	}
}

func boolKeys(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// checkCephFiles checks /etc/ceph as provision writes it and returns the
// admin key.
func checkCephFiles(t *testing.T, dir, masterIP string) string {
	conf := readFile(t, filepath.Join(dir, "etc/ceph/ceph.conf"))
	if !strings.Contains(conf, "mon_host = [v2:"+masterIP+":3300,v1:"+masterIP+":6789]") {
		t.Errorf("ceph.conf does not name the master's mon:\n%s", conf)
	}
	if !strings.Contains(conf, "keyring = /etc/ceph/ceph.client.admin.keyring") {
		t.Errorf("ceph.conf does not name the admin keyring:\n%s", conf)
	}
	kr := filepath.Join(dir, "etc/ceph/ceph.client.admin.keyring")
	if fi, err := os.Stat(kr); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin keyring has mode %v, want 0600", fi.Mode().Perm())
	}
	m := regexp.MustCompile(`(?m)^\[client\.admin\]\n\tkey = (\S+)$`).FindStringSubmatch(readFile(t, kr))
	if m == nil {
		t.Fatalf("no client.admin key in %s", kr)
	}
	// A cephx key: u16 type (1, AES), u32+u32 creation time, u16 length 16, the secret.
	b, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil || len(b) != 28 || binary.LittleEndian.Uint16(b) != 1 || binary.LittleEndian.Uint16(b[10:]) != 16 ||
		fmt.Sprintf("%x", b[12:]) != secret {
		t.Errorf("admin key %s is not the cephx key of the secret (%v, % x)", m[1], err, b)
	}
	return m[1]
}

// provisionedCeph starts Ceph with scripts/ceph-dev as node1's unit does
// (the settings provision writes for it, on a loopback address of its own
// instead of the private network's), then reaches it with the ceph.conf and
// keyring provision writes for another node.
func provisionedCeph(t *testing.T, src string) {
	if os.Geteuid() != 0 {
		t.Skip("not root: scripts/ceph-dev needs root to install Ceph; Ceph on a private address not tried")
	}
	// An address no other cluster of this machine uses (make test's is on
	// 127.0.0.1), so the default ports are free on it.
	pid := os.Getpid()
	ip := fmt.Sprintf("127.86.%d.%d", pid/250%250+1, pid%250+1)
	master, host := t.TempDir(), t.TempDir()
	provision(t, src, master, node{name: "node1", ip: ip, master: true}, ip)
	provision(t, src, host, node{name: "node2", ip: "127.86.0.2"}, ip)

	env := envFile(t, filepath.Join(master, "etc/volplugin/ceph-dev.env"))
	if env["CEPH_DEV_ADDR"] != ip {
		t.Errorf("ceph-dev.env: CEPH_DEV_ADDR=%s, want the master's %s", env["CEPH_DEV_ADDR"], ip)
	}
	env["CEPH_DEV_DIR"] = filepath.Join(t.TempDir(), "ceph")
	environ := os.Environ()
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	cephDev := func(arg string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts/ceph-dev"), arg)
		cmd.Env, cmd.WaitDelay = environ, 10*time.Second
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := cephDev("down"); err != nil {
			t.Errorf("ceph-dev down: %v\n%s", err, out)
		}
	})
	t0 := time.Now()
	if out, err := cephDev("up"); err != nil {
		t.Fatalf("ceph-dev up with node1's settings: %v\n%s", err, out)
	}
	t.Logf("ceph-dev up on %s: %s", ip, time.Since(t0).Round(time.Second))

	// node2's ceph.conf, with its /etc/ceph (the keyring) where provision
	// wrote it.
	conf := filepath.Join(host, "ceph.conf")
	text := strings.ReplaceAll(readFile(t, filepath.Join(host, "etc/ceph/ceph.conf")), "/etc/ceph/", filepath.Join(host, "etc/ceph")+"/")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	client := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args = append([]string{"-c", conf}, args...)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s with node2's files: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out)
	}
	if h := client("ceph", "--connect-timeout", "10", "health"); !strings.HasPrefix(h, "HEALTH_OK") {
		t.Errorf("ceph health with node2's files: %s", h)
	}
	client("rbd", "create", "--size", "8M", "rbd/vagrant-probe")
	if ls := client("rbd", "ls", "rbd"); !strings.Contains(ls, "vagrant-probe") {
		t.Errorf("rbd ls: %q", ls)
	}
	client("rbd", "rm", "--no-progress", "rbd/vagrant-probe")
}
