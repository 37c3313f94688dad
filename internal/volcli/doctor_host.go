package volcli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/iolimit"
	"github.com/volplugin/volplugin/internal/sysexec"
	"github.com/volplugin/volplugin/storage/backend/ceph/mapper"
)

// The Ceph backend's driver options naming a volume's client (its
// OptConf, OptKeyring and OptUser; that package needs cgo, volcli does not).
const (
	cephOptConf    = "conf"
	cephOptKeyring = "keyring"
	cephOptUser    = "user"
)

// hostNeeds is what the policies ask of a host.
type hostNeeds struct {
	known      bool // the policies could be listed
	local      bool // a policy mounts local images (loop devices)
	ceph       bool // a policy maps Ceph images
	rateLimits bool // a policy sets I/O limits
}

func (d *doctor) needs() hostNeeds {
	if d.policies == nil {
		// Unknown: the local backend is volmaster's default.
		return hostNeeds{local: true}
	}
	n := hostNeeds{known: true}
	for _, p := range d.policies {
		n.local = n.local || p.Backends.Mount == config.BackendLocal
		n.ceph = n.ceph || p.Backends.Mount == config.BackendCeph
		n.rateLimits = n.rateLimits || p.Runtime.RateLimit != config.RateLimit{}
	}
	return n
}

func (d *doctor) hostChecks() {
	if uid := os.Geteuid(); uid != 0 {
		d.add(statusWarn, "privileges", fmt.Sprintf("running as uid %d, volplugin runs as root: a device check may fail "+
			"here for want of rights alone", uid), "run volcli doctor --host as root")
	}
	d.checkPlugin()
	n := d.needs()
	kind := d.checkMapper(n)
	d.checkDevice("loop devices", "loop-control", n.local || kind == mapper.Fuse,
		"the local backend and rbd-fuse attach images to loop devices", "modprobe loop; run volplugin as root")
	d.checkDevice("FUSE", "fuse", kind == mapper.Fuse,
		"rbd-fuse, the Ceph mapper here, needs it", "modprobe fuse; run volplugin as root")
	d.checkCgroups(n)
	d.checkMkfs()
	d.checkCeph(n)
}

// checkPlugin checks Docker's plugin directory and volplugin's socket in
// it: the socket must answer Docker's handshake as a volume driver.
func (d *doctor) checkPlugin() {
	dir := d.o.PluginDir
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		d.add(statusFail, "plugin directory", err.Error(), "start volplugin, which creates it; Docker reads plugin sockets "+
			"from "+config.DefaultPluginDir+" only, so give volplugin --socket-dir (and doctor --plugin-dir) another only for a test")
		d.add(statusSkip, "plugin socket", "needs the plugin directory", "")
		return
	case !fi.IsDir():
		d.add(statusFail, "plugin directory", dir+" is not a directory", "remove it and start volplugin")
		d.add(statusSkip, "plugin socket", "needs the plugin directory", "")
		return
	}
	d.add(statusOK, "plugin directory", dir+" exists", "")

	sock := filepath.Join(dir, d.o.PluginName+".sock")
	start := "start volplugin (systemctl start volplugin)"
	fi, err = os.Stat(sock)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.add(statusFail, "plugin socket", sock+" does not exist: volplugin is not running here (or under another --plugin-name)", start)
		return
	case err != nil:
		d.add(statusFail, "plugin socket", err.Error(), "run volcli doctor --host as root")
		return
	case fi.Mode()&fs.ModeSocket == 0:
		d.add(statusFail, "plugin socket", sock+" is not a socket", "remove it, then "+start)
		return
	}
	implements, err := d.activate(sock)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		d.add(statusFail, "plugin socket", sock+": nobody listens (a socket left by a volplugin that died)", start+"; it replaces the socket")
	case err != nil:
		d.add(statusFail, "plugin socket", fmt.Sprintf("%s: Plugin.Activate: %v", sock, err), "see volplugin's log; restart it")
	case !slices.Contains(implements, "VolumeDriver"):
		d.add(statusFail, "plugin socket", fmt.Sprintf("%s answers as %v, not as a volume driver", sock, implements),
			"give --plugin-name the name volplugin was started with")
	default:
		d.add(statusOK, "plugin socket", sock+" answers Docker's handshake as a volume driver", "")
	}
}

// activate sends Docker's plugin handshake to the socket and returns the
// plugin kinds it implements.
func (d *doctor) activate(sock string) ([]string, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/Plugin.Activate", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.docker.plugins.v1.2+json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	var a struct{ Implements []string }
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("answer is not Docker's plugin JSON: %v", err)
	}
	return a.Implements, nil
}

// checkMapper finds how this host would map Ceph images, without loading
// anything, and returns the mapper kind ("" if none or not needed).
func (d *doctor) checkMapper(n hostNeeds) string {
	switch {
	case !n.known:
		d.add(statusSkip, "ceph mapper", "needs the policies ("+d.policiesErr+")", "")
		return ""
	case !n.ceph:
		d.add(statusSkip, "ceph mapper", "no policy uses Ceph", "")
		return ""
	}
	ctx, cancel := d.ctx()
	defer cancel()
	kind, err := mapper.Detect(ctx, mapper.Env{SysRoot: d.o.SysRoot, DevRoot: d.o.DevRoot, ProcRoot: d.o.ProcRoot,
		LookPath: d.lookPath, Timeout: d.o.CheckTimeout, NoLoad: true})
	if err != nil {
		d.add(statusFail, "ceph mapper", err.Error(), "install ceph-common on a kernel with the rbd module (krbd), or "+
			"rbd-nbd with the nbd module, or rbd-fuse with FUSE and loop devices")
		return ""
	}
	what := map[string]string{
		mapper.KRBD: "krbd: the kernel's rbd module and the rbd tool",
		mapper.NBD:  "rbd-nbd with the kernel's nbd module",
		mapper.Fuse: "rbd-fuse and a loop device (no rbd or nbd module here)",
	}[kind]
	d.add(statusOK, "ceph mapper", what, "")
	return kind
}

// checkDevice opens the character device name under DevRoot, as the backend
// would. Missing where nothing needs it is a warning only.
func (d *doctor) checkDevice(check, name string, needed bool, why, fix string) {
	p := filepath.Join(d.o.DevRoot, name)
	err := openCharDevice(p)
	switch {
	case err == nil:
		d.add(statusOK, check, p+" opens", "")
	case needed:
		d.add(statusFail, check, err.Error()+" ("+why+")", fix)
	default:
		d.add(statusWarn, check, err.Error()+" (no policy needs it now)", fix)
	}
}

func openCharDevice(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", p)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkCgroups finds where volplugin would write I/O limits.
func (d *doctor) checkCgroups(n hostNeeds) {
	s, err := iolimit.Probe(iolimit.Options{ProcRoot: d.o.ProcRoot})
	version := "none"
	switch {
	case err != nil:
	case s.BlkioRoot != "" && s.Cgroup2Root != "":
		version = "v1 and v2 (hybrid)"
	case s.BlkioRoot != "":
		version = "v1"
	default:
		version = "v2"
	}
	var parts []string
	if s.BlkioRoot != "" {
		parts = append(parts, fmt.Sprintf("v1 blkio at %s %s", s.BlkioRoot, map[bool]string{true: "throttles", false: "has no throttle files"}[s.Throttle]))
	}
	if s.Cgroup2Root != "" {
		parts = append(parts, fmt.Sprintf("v2 at %s %s", s.Cgroup2Root, map[bool]string{true: "has the io controller", false: "has no io controller"}[s.IO]))
	}
	detail := "cgroup " + version
	if len(parts) > 0 {
		detail += ": " + strings.Join(parts, "; ")
	}
	switch {
	case s.Usable():
		d.add(statusOK, "cgroups", detail, "")
	case n.rateLimits || !n.known:
		if err != nil {
			detail = err.Error()
		}
		d.add(statusFail, "cgroups", detail+": rate limits cannot be applied", "mount the cgroup v1 blkio hierarchy, or enable the io controller of cgroup v2")
	default:
		d.add(statusWarn, "cgroups", detail+": rate limits could not be applied (no policy sets one now)", "")
	}
}

// checkMkfs looks for the mkfs program of every policy's filesystem, one
// line per program.
func (d *doctor) checkMkfs() {
	if d.policies == nil {
		d.add(statusSkip, "mkfs", "needs the policies ("+d.policiesErr+")", "")
		return
	}
	users := map[string][]string{} // program -> policies
	for _, p := range d.policies {
		if p.Backends.CRUD == "" || p.Create.Filesystem == "" {
			continue // mount-only (NFS): nothing to format
		}
		cmd, ok := p.AllFilesystems()[p.Create.Filesystem]
		if !ok {
			d.add(statusFail, "mkfs", fmt.Sprintf("policy %s: filesystem %s has no command", p.Name, p.Create.Filesystem),
				"volcli policy upload "+p.Name+" with a filesystems entry for it")
			continue
		}
		if err := config.CheckFSCommand(cmd); err != nil {
			d.add(statusFail, "mkfs", fmt.Sprintf("policy %s: filesystem %s: %s", p.Name, p.Create.Filesystem, cleanMessage(err)),
				"volcli policy upload "+p.Name+" with an allowed mkfs command")
			continue
		}
		if cmd[0] == "false" {
			continue // a filesystem that must never be made
		}
		users[cmd[0]] = append(users[cmd[0]], p.Name)
	}
	if len(users) == 0 {
		d.add(statusSkip, "mkfs", "no policy makes a filesystem", "")
		return
	}
	for _, prog := range slices.Sorted(maps.Keys(users)) {
		pols := "policy " + strings.Join(users[prog], ", ")
		if len(users[prog]) > 1 {
			pols = "policies " + strings.Join(users[prog], ", ")
		}
		path, err := d.lookPath(prog)
		if err != nil {
			d.add(statusFail, "mkfs", fmt.Sprintf("%s, needed by %s: %v", prog, pols, err),
				"apt-get install "+mkfsPackage(prog)+" (it must be on volplugin's PATH)")
			continue
		}
		d.add(statusOK, "mkfs", fmt.Sprintf("%s at %s (%s)", prog, path, pols), "")
	}
}

// mkfsPackage is the Debian package of an mkfs program.
func mkfsPackage(prog string) string {
	switch filepath.Base(prog) {
	case "mkfs.xfs":
		return "xfsprogs"
	case "mkfs.btrfs":
		return "btrfs-progs"
	default:
		return "e2fsprogs"
	}
}

// cephClient is one Ceph identity the policies use, and their pools.
type cephClient struct {
	conf, user, keyring string
	pools               []string
}

func (c cephClient) String() string {
	return "client." + cmp.Or(c.user, "admin") + " (" + cmp.Or(c.conf, "the ceph tool's default ceph.conf") + ")"
}

// checkCeph reaches the cluster as each Ceph client the policies name and
// checks that their pools exist: one `ceph osd pool ls` each, bounded by
// the ceph tool's --connect-timeout and --check-timeout.
func (d *doctor) checkCeph(n hostNeeds) {
	switch {
	case !n.known:
		d.add(statusSkip, "ceph", "needs the policies ("+d.policiesErr+")", "")
		return
	case !n.ceph:
		d.add(statusSkip, "ceph", "no policy uses Ceph", "")
		return
	}
	tool, err := d.lookPath("ceph")
	if err != nil {
		d.add(statusWarn, "ceph", "cannot check the cluster: "+err.Error(), "apt-get install ceph-common")
		return
	}
	var clients []*cephClient
	for _, p := range d.policies {
		if p.Backends.Mount != config.BackendCeph {
			continue
		}
		o := p.Driver.Options
		c := cephClient{conf: cmp.Or(o[cephOptConf], d.o.CephConf), user: o[cephOptUser], keyring: o[cephOptKeyring]}
		i := slices.IndexFunc(clients, func(x *cephClient) bool { return x.conf == c.conf && x.user == c.user && x.keyring == c.keyring })
		if i < 0 {
			clients = append(clients, &c)
			i = len(clients) - 1
		}
		if !slices.Contains(clients[i].pools, p.Driver.Pool) {
			clients[i].pools = append(clients[i].pools, p.Driver.Pool)
		}
	}
	secs := strconv.Itoa(int(math.Ceil(d.o.CheckTimeout.Seconds())))
	for _, c := range clients {
		if c.keyring != "" {
			if _, err := os.Stat(c.keyring); err != nil {
				d.add(statusFail, "ceph", fmt.Sprintf("as %s: keyring: %v", c, err), "give the policy's keyring option a keyring file of this host")
				continue
			}
		}
		argv := []string{tool, "--connect-timeout", secs}
		for _, f := range [][2]string{{"--conf", c.conf}, {"--id", c.user}, {"--keyring", c.keyring}} {
			if f[1] != "" {
				argv = append(argv, f[0], f[1])
			}
		}
		argv = append(argv, "--format", "json", "osd", "pool", "ls")
		ctx, cancel := d.ctx()
		out, err := sysexec.Run(ctx, d.o.CheckTimeout, argv...)
		cancel()
		if err != nil {
			d.add(statusFail, "ceph", fmt.Sprintf("as %s: %s", c, cephError(err, d.o.CheckTimeout)),
				"check the monitors in the ceph.conf and the client's keyring (ceph auth get client."+cmp.Or(c.user, "admin")+")")
			continue
		}
		var have []string
		if err := json.Unmarshal(out, &have); err != nil {
			d.add(statusFail, "ceph", fmt.Sprintf("as %s: ceph osd pool ls answered %q", c, out), "")
			continue
		}
		var missing []string
		for _, p := range c.pools {
			if !slices.Contains(have, p) {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			d.add(statusFail, "ceph", fmt.Sprintf("reached as %s, but pool %s does not exist", c, strings.Join(missing, ", ")),
				"ceph osd pool create POOL; rbd pool init POOL")
			continue
		}
		d.add(statusOK, "ceph", fmt.Sprintf("reached as %s; pool %s exists", c, strings.Join(c.pools, ", ")), "")
	}
}

// cephError is the gist of a failed ceph call: its last line of stderr
// (the tool logs every retry before it), or that it did not answer.
func cephError(err error, timeout time.Duration) string {
	var ee *sysexec.ExitError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &ee):
		lines := strings.Split(strings.TrimSpace(ee.Stderr), "\n")
		return fmt.Sprintf("ceph exited %d: %s", ee.Code, lines[len(lines)-1])
	}
	return err.Error()
}
