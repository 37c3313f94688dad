package volcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/client"
	"github.com/volplugin/volplugin/internal/diag"
)

// Results of a doctor check. WARN and SKIP do not fail the run.
const (
	statusOK   = "OK"
	statusWarn = "WARN"
	statusFail = "FAIL"
	statusSkip = "SKIP"
)

// Defaults of the doctor flags.
const (
	defaultPluginName   = "volplugin" // volplugin --plugin-name
	defaultCheckTimeout = 5 * time.Second
	defaultMaxSkew      = 2 * time.Second
)

func doctorCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that volmaster, etcd and (with --host) this machine are ready to serve volumes",
		Description: "Prints one line per check: OK, WARN (works, but look), SKIP (does not apply) or FAIL, what was " +
			"checked, and for a failure how to fix it. Exits 0 only when no check failed. Without --host: volmaster " +
			"answers (and its version), it reaches etcd, this machine's clock agrees with volmaster's, a volsupervisor " +
			"leads. With --host, also what a Docker host running volplugin needs: the plugin directory and " +
			"volplugin's socket answering, loop devices, FUSE, a way to map Ceph images (krbd, rbd-nbd or rbd-fuse; " +
			"only if a policy uses Ceph), cgroup blkio or io controllers for rate limits, the mkfs program of every " +
			"policy's filesystem, and the Ceph cluster reachable with each Ceph policy's client and keyring. Run it " +
			"as root, like volplugin, and with volplugin's settings (--plugin-dir, --plugin-name, --ceph-conf, and " +
			"--path for its PATH). Each check is bounded by --check-timeout; nothing on the host is changed (kernel " +
			"modules are looked up with modprobe --dry-run, not loaded). --json prints the checks as a JSON array.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "host", Usage: "also check this machine as a volplugin host"},
			&cli.StringFlag{Name: "plugin-dir", Value: config.DefaultPluginDir, Usage: "`DIR` of Docker's plugin sockets (volplugin's --socket-dir)"},
			&cli.StringFlag{Name: "plugin-name", Value: defaultPluginName, Usage: "volplugin's --plugin-name: its socket is `NAME`.sock"},
			&cli.StringFlag{Name: "path", Usage: "look for mkfs, Ceph and mapping tools in these `DIRS` (colon-separated; volplugin's PATH); default: $PATH"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "the ceph.conf `FILE` volplugin is given (--ceph-conf); default: the ceph tool's ($CEPH_CONF, /etc/ceph/ceph.conf)"},
			&cli.DurationFlag{Name: "max-skew", Value: defaultMaxSkew, Usage: "fail when this machine's clock differs from volmaster's by more than `DURATION`"},
			&cli.DurationFlag{Name: "check-timeout", Value: defaultCheckTimeout, Usage: "bound each check by `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0); err != nil {
				return err
			}
			// One attempt per call: doctor reports what it finds, and
			// --check-timeout bounds each check.
			k, err := e.connect(c, client.WithRetries(0, 0))
			if err != nil {
				return err
			}
			return doctorAction(k)
		},
	}
}

// doctorOptions are what doctor checks against; tests point the paths at
// temporary directories to break one thing at a time.
type doctorOptions struct {
	Host                  bool
	PluginDir, PluginName string
	Path                  string // tool search path, like $PATH
	CephConf              string
	MaxSkew, CheckTimeout time.Duration
	// SysRoot, DevRoot and ProcRoot stand for /sys, /dev and /proc.
	SysRoot, DevRoot, ProcRoot string
}

func doctorAction(k *call) error {
	o := doctorOptions{
		Host: k.c.Bool("host"), PluginDir: k.c.String("plugin-dir"), PluginName: k.c.String("plugin-name"),
		Path: k.c.String("path"), CephConf: k.c.String("ceph-conf"),
		MaxSkew: k.c.Duration("max-skew"), CheckTimeout: k.c.Duration("check-timeout"),
		SysRoot: "/sys", DevRoot: "/dev", ProcRoot: "/proc",
	}
	if !k.c.IsSet("path") {
		o.Path = os.Getenv("PATH")
	}
	switch {
	case o.CheckTimeout <= 0:
		return usageErrorf("--check-timeout %s must be positive", o.CheckTimeout)
	case o.MaxSkew <= 0:
		return usageErrorf("--max-skew %s must be positive", o.MaxSkew)
	case o.PluginDir == "" || o.PluginName == "":
		return usageErrorf("--plugin-dir and --plugin-name must not be empty")
	}
	d := &doctor{k: k, o: o}
	d.run()
	return d.report()
}

// checkResult is one line of the report.
type checkResult struct {
	Status string `json:"status"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// doctor runs the checks in order; later ones use what earlier ones found.
type doctor struct {
	k       *call
	o       doctorOptions
	results []checkResult

	reachable bool
	// policies are volmaster's; nil when they could not be listed
	// (policiesErr says why).
	policies    []config.Policy
	policiesErr string
}

func (d *doctor) add(status, check, detail, fix string) {
	if fix != "" {
		fix = cell(fix)
	}
	d.results = append(d.results, checkResult{Status: status, Check: check, Detail: cell(detail), Fix: fix})
}

// ctx is the context of one check.
func (d *doctor) ctx() (context.Context, context.CancelFunc) {
	parent := context.Background()
	if d.k != nil && d.k.c != nil && d.k.c.Context != nil {
		parent = d.k.c.Context
	}
	return context.WithTimeout(parent, d.o.CheckTimeout)
}

func (d *doctor) run() {
	d.checkVolmaster()
	if !d.reachable {
		for _, c := range []string{"clock", "etcd", "volsupervisor"} {
			d.add(statusSkip, c, "needs volmaster", "")
		}
		d.policiesErr = "volmaster is unreachable"
	} else {
		d.checkEtcd()
		d.checkSupervisor()
		d.loadPolicies()
	}
	if d.o.Host {
		d.hostChecks()
	}
}

// report prints the results and fails unless every check passed.
func (d *doctor) report() error {
	failed := 0
	for _, r := range d.results {
		if r.Status == statusFail {
			failed++
		}
	}
	if d.k.json {
		if err := d.k.printJSON(d.results); err != nil {
			return err
		}
	} else {
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, r := range d.results {
			line := r.Status + "\t" + r.Check + "\t" + r.Detail
			if r.Fix != "" {
				line += "; fix: " + r.Fix
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		if err := d.k.write(b.String()); err != nil {
			return err
		}
	}
	if failed > 0 {
		return &exitError{code: ExitError, msg: fmt.Sprintf("doctor: %d of %d checks failed", failed, len(d.results))}
	}
	return nil
}

// errText is err for a report line: a volmaster error without its wire
// details.
func (d *doctor) errText(err error) string {
	var ee *exitError
	if errors.As(d.k.fail(err, ""), &ee) {
		return ee.msg
	}
	return err.Error()
}

// volmasterInfo is the part of volmaster's /info doctor reads.
type volmasterInfo struct {
	Process diag.Process `json:"process"`
}

// checkVolmaster reads /info: volmaster answers, its version, and (as the
// clock check) its time against ours.
func (d *doctor) checkVolmaster() {
	ctx, cancel := d.ctx()
	defer cancel()
	before := time.Now()
	raw, err := d.k.api.Info(ctx)
	after := time.Now()
	var ae *client.Error
	switch {
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		d.reachable = true
		d.add(statusOK, "volmaster", fmt.Sprintf("%s answers (its version is not readable without a token: %s)", d.k.url, ae.Message), "")
		d.add(statusSkip, "clock", "needs volmaster's /info (a token)", "")
		return
	case err != nil:
		fix := fmt.Sprintf("start volmaster, or point --volmaster (or $VOLMASTER) at it; from its host: curl %s/healthz", d.k.url)
		if errors.As(err, &ae) {
			fix = "see volmaster's log"
			d.reachable = true
		}
		d.add(statusFail, "volmaster", d.errText(err), fix)
		if d.reachable {
			d.add(statusSkip, "clock", "needs volmaster's /info", "")
		}
		return
	}
	d.reachable = true
	var in volmasterInfo
	if err := json.Unmarshal(raw, &in); err != nil {
		d.add(statusFail, "volmaster", fmt.Sprintf("%s answered /info with something else than volmaster's: %v", d.k.url, err),
			"check that --volmaster names volmaster's API address")
		return
	}
	p := in.Process
	d.add(statusOK, "volmaster", fmt.Sprintf("%s answers: %s version %s (commit %s, %s, kernel %s); this volcli: %s",
		d.k.url, p.Daemon, p.Version, p.Commit, p.GoVersion, p.Kernel, diag.Version), "")
	d.checkClock(p.Time, before, after)
}

// checkClock compares volmaster's time, read between before and after,
// with the middle of that interval.
func (d *doctor) checkClock(theirs, before, after time.Time) {
	if theirs.IsZero() {
		d.add(statusWarn, "clock", "volmaster does not report its time (it is older than this volcli)", "")
		return
	}
	rtt := after.Sub(before)
	skew := theirs.Sub(before.Add(rtt / 2))
	abs := max(skew, -skew)
	detail := fmt.Sprintf("this machine's clock is %s %s volmaster's", abs.Round(time.Millisecond),
		map[bool]string{true: "behind", false: "ahead of"}[skew > 0])
	if abs < time.Millisecond {
		detail = "this machine's clock agrees with volmaster's"
	}
	margin := (rtt / 2).Round(time.Millisecond).String()
	if rtt/2 < time.Millisecond {
		margin = "1ms"
	}
	detail += " (±" + margin + ", half the call's round trip)"
	if abs-rtt/2 > d.o.MaxSkew {
		d.add(statusFail, "clock", detail+fmt.Sprintf(", more than --max-skew %s", d.o.MaxSkew),
			"synchronise the clocks of every host with NTP (chrony or systemd-timesyncd)")
		return
	}
	d.add(statusOK, "clock", detail, "")
}

func (d *doctor) checkEtcd() {
	ctx, cancel := d.ctx()
	defer cancel()
	if err := d.k.api.Health(ctx); err != nil {
		d.add(statusFail, "etcd", "volmaster's /healthz: "+d.errText(err)+" (volmaster cannot read etcd)",
			"check etcd (volmaster's --etcd endpoints, or its embedded etcd in its --data-dir) and volmaster's log")
		return
	}
	d.add(statusOK, "etcd", "volmaster reads etcd", "")
}

func (d *doctor) checkSupervisor() {
	ctx, cancel := d.ctx()
	defer cancel()
	sts, err := d.k.api.Supervisors(ctx)
	switch {
	case err != nil:
		d.add(statusWarn, "volsupervisor", "status not readable: "+d.errText(err), "")
		return
	case len(sts) == 0:
		d.add(statusWarn, "volsupervisor", "none is running: no scheduled snapshots, ephemeral removal, reclamation or trash purge",
			"start volsupervisor (systemctl start volsupervisor) on one or more hosts")
		return
	}
	for _, st := range sts {
		if st.Leading {
			d.add(statusOK, "volsupervisor", fmt.Sprintf("%s leads (%d running)", st.Name, len(sts)), "")
			return
		}
	}
	d.add(statusWarn, "volsupervisor", fmt.Sprintf("%d running, none leads (an election under way?)", len(sts)),
		"volcli supervisor status; see the volsupervisors' logs")
}

func (d *doctor) loadPolicies() {
	ctx, cancel := d.ctx()
	defer cancel()
	pols, err := d.k.api.PoliciesDetail(ctx)
	if err != nil {
		d.policiesErr = "cannot list policies: " + d.errText(err)
		return
	}
	d.policies = pols
	if pols == nil {
		d.policies = []config.Policy{}
	}
}

// lookPath finds an executable file in o.Path, as a shell would in $PATH.
func (d *doctor) lookPath(file string) (string, error) {
	if strings.Contains(file, "/") {
		return file, executable(file)
	}
	for _, dir := range filepath.SplitList(d.o.Path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in %s", file, d.o.Path)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
