// Package packaging holds no Go code: it is the systemd units and sample
// configuration that make install installs (packaging/systemd,
// packaging/etc), and this test of the Vagrantfile at the top of the tree,
// whose VMs run the suite through those units.
package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// root is the repository, seen from this package's directory.
const root = ".."

// secret stands for the per-checkout secret the Vagrantfile passes on.
const secret = "00112233445566778899aabbccddeeff"

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// node is one VM of the Vagrantfile.
type node struct {
	name, ip string
	master   bool
}

// vagrantNodes reads the NODES table and MASTER of the Vagrantfile.
func vagrantNodes(t *testing.T, vf string) []node {
	t.Helper()
	table := regexp.MustCompile(`(?s)\nNODES = \{\n(.*?)\n\}`).FindStringSubmatch(vf)
	if table == nil {
		t.Fatal("Vagrantfile: no NODES = { ... } table")
	}
	master := regexp.MustCompile(`\nMASTER = "([^"]+)"`).FindStringSubmatch(vf)
	if master == nil {
		t.Fatal(`Vagrantfile: no MASTER = "..."`)
	}
	var nodes []node
	nets := map[string]bool{}
	for _, m := range regexp.MustCompile(`"([^"]+)" => "([^"]+)"`).FindAllStringSubmatch(table[1], -1) {
		nodes = append(nodes, node{name: m[1], ip: m[2], master: m[1] == master[1]})
		nets[m[2][:strings.LastIndex(m[2], ".")+1]] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("Vagrantfile: %d nodes in NODES, want 3: %v", len(nodes), nodes)
	}
	if !slices.ContainsFunc(nodes, func(n node) bool { return n.master }) {
		t.Fatalf("Vagrantfile: MASTER %q is not in NODES", master[1])
	}
	if len(nets) != 1 {
		t.Errorf("Vagrantfile: the nodes are not on one /24 network: %v", nodes)
	}
	return nodes
}

// TestVagrantfile checks the Vagrantfile and what provisions its VMs, as far
// as that goes without VMs: the scripts it names exist and are executable,
// `vagrant validate` accepts it (Debian's vagrant is installed when missing,
// as root; otherwise `ruby -c`), scripts/provision --dry-run plans for each
// node only commands that CI runs too, the files it writes configure the
// daemons with flags they have, and a Ceph cluster started the way node1
// starts it (scripts/ceph-dev on a private address, with the admin key
// derived from the shared secret) is reachable with the files every node
// gets.
func TestVagrantfile(t *testing.T) {
	vf := readFile(t, filepath.Join(root, "Vagrantfile"))
	nodes := vagrantNodes(t, vf)

	t.Run("static", func(t *testing.T) { checkVagrantfileText(t, vf, nodes) })
	t.Run("validate", func(t *testing.T) { validateVagrantfile(t) })
	t.Run("provision", func(t *testing.T) {
		src := srcLink(t)
		ci := ciCommands(t)
		keys := map[string]bool{}
		master := nodes[slices.IndexFunc(nodes, func(n node) bool { return n.master })]
		for _, n := range nodes {
			t.Run(n.name, func(t *testing.T) {
				dir := t.TempDir()
				plan := provision(t, src, dir, n, master.ip)
				checkPlan(t, src, dir, n, plan, ci)
				checkEnvFiles(t, dir, n, master.ip)
				keys[checkCephFiles(t, dir, master.ip)] = true
			})
		}
		if len(keys) != 1 {
			t.Errorf("the nodes got different Ceph admin keys: %v", keys)
		}
	})
	t.Run("ceph", func(t *testing.T) { provisionedCeph(t, srcLink(t)) })
	t.Run("docs", func(t *testing.T) { checkGuide(t, nodes) })
}

func checkVagrantfileText(t *testing.T, vf string, nodes []node) {
	for _, want := range []string{
		`config.vm.box = BOX`, `BOX = "debian/bookworm64"`,
		`config.vm.provider :libvirt`, `config.vm.provider :virtualbox`,
		`config.vm.synced_folder ".", "/vagrant"`,
		`node.vm.network :private_network, ip: ip`,
		`path: "scripts/provision"`, `"--src", "/vagrant"`,
	} {
		if !strings.Contains(vf, want) {
			t.Errorf("Vagrantfile lacks %s", want)
		}
	}
	for _, n := range nodes {
		if !regexp.MustCompile(`^192\.168\.56\.\d+$`).MatchString(n.ip) {
			t.Errorf("node %s has address %s, not on the private network 192.168.56.0/24", n.name, n.ip)
		}
	}
	// Every file the Vagrantfile runs: there, executable, a project script.
	paths := regexp.MustCompile(`path: "([^"]+)"`).FindAllStringSubmatch(vf, -1)
	if len(paths) == 0 {
		t.Error("Vagrantfile provisions with no script (path: ...)")
	}
	for _, m := range paths {
		if !strings.HasPrefix(m[1], "scripts/") {
			t.Errorf("Vagrantfile runs %s, not one of the project's scripts/", m[1])
		}
		checkExecutable(t, filepath.Join(root, m[1]))
	}
}

func checkExecutable(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 != 0o111 {
		t.Errorf("%s is not an executable file (%v)", p, fi.Mode())
	}
}

// srcLink returns a path of the repository that scripts/provision accepts as
// --src (only [A-Za-z0-9._/-], as it goes into unit files), whatever the
// checkout's own path is.
func srcLink(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "src")
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// aptInstall installs the Debian packages that are missing, as the project's
// scripts do (noninteractive, waiting for the dpkg lock).
func aptInstall(t *testing.T, pkgs ...string) error {
	t.Helper()
	var missing []string
	for _, p := range pkgs {
		out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	apt := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-qq", "-o", "DPkg::Lock::Timeout=120"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t0 := time.Now()
	install := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if apt(install...) != nil { // stale package lists: update once
		if err := apt("update"); err != nil {
			return err
		}
		if err := apt(install...); err != nil {
			return err
		}
	}
	t.Logf("installed %s in %s", strings.Join(missing, " "), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// validateVagrantfile runs `vagrant validate` on the Vagrantfile, with the
// libvirt provider's settings checked where vagrant-libvirt installs; where
// vagrant does not install, `ruby -c`.
func validateVagrantfile(t *testing.T) {
	if _, err := exec.LookPath("vagrant"); err != nil {
		if os.Geteuid() != 0 {
			t.Skip("not root: vagrant is not installed and cannot be; the Vagrantfile is not validated")
		}
		if err := aptInstall(t, "vagrant"); err != nil {
			t.Logf("vagrant does not install (%v): checking the Vagrantfile with ruby -c only", err)
			if err := aptInstall(t, "ruby"); err != nil {
				t.Fatalf("neither vagrant nor ruby installs: %v", err)
			}
			out, err := exec.Command("ruby", "-c", filepath.Join(root, "Vagrantfile")).CombinedOutput()
			if err != nil {
				t.Fatalf("ruby -c Vagrantfile: %v\n%s", err, out)
			}
			return
		}
	}
	if os.Geteuid() == 0 {
		if err := aptInstall(t, "vagrant-libvirt"); err != nil {
			t.Logf("vagrant-libvirt does not install, provider settings not validated: %v", err)
		}
	}
	// Vagrant's state and the cluster secret go to a temporary directory,
	// not into the checkout or $HOME.
	tmp := t.TempDir()
	dot := filepath.Join(tmp, "dot")
	vagrant := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "vagrant", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "VAGRANT_HOME="+filepath.Join(tmp, "home"), "VAGRANT_DOTFILE_PATH="+dot,
			"VAGRANT_CHECKPOINT_DISABLE=1", "VAGRANT_DEFAULT_PROVIDER=libvirt", "VAGRANT_NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vagrant %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	args := []string{"validate"}
	if !strings.Contains(vagrant("plugin", "list"), "vagrant-libvirt") {
		args = append(args, "--ignore-provider")
	}
	t0 := time.Now()
	out := vagrant(args...)
	t.Logf("vagrant %s: %s\n%s", strings.Join(args, " "), time.Since(t0).Round(100*time.Millisecond), out)

	// The Vagrantfile made the cluster secret, and keeps it.
	first := readFile(t, filepath.Join(dot, "volplugin-cluster-secret"))
	if !regexp.MustCompile(`^[0-9a-f]{32}\n$`).MatchString(first) {
		t.Errorf("cluster secret %q is not 32 hex digits", first)
	}
	vagrant(args...)
	if again := readFile(t, filepath.Join(dot, "volplugin-cluster-secret")); again != first {
		t.Errorf("the cluster secret changed from %q to %q", first, again)
	}
}

// checkGuide checks that the operator guide's Vagrant section describes this
// Vagrantfile.
func checkGuide(t *testing.T, nodes []node) {
	guide := readFile(t, filepath.Join(root, "docs/operator-guide.md"))
	const heading = "## Three-VM cluster with Vagrant"
	_, sec, ok := strings.Cut(guide, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/operator-guide.md has no %q", heading)
	}
	if i := regexp.MustCompile(`(?m)^## `).FindStringIndex(sec); i != nil {
		sec = sec[:i[0]]
	}
	for _, want := range []string{"vagrant up", "scripts/provision", "scripts/ceph-dev"} {
		if !strings.Contains(sec, want) {
			t.Errorf("%s does not mention %s", heading, want)
		}
	}
	for _, n := range nodes {
		if !strings.Contains(sec, n.name) || !strings.Contains(sec, n.ip) {
			t.Errorf("%s does not name %s (%s)", heading, n.name, n.ip)
		}
	}
}
