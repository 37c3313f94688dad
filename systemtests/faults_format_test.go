package systemtests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// The primary superblock of a formatted volume zeroed while it is unmounted
// (a stray write, a bad disk): every mount is refused naming the repair
// command, nothing is formatted; that command gets the marker back.
func faultSuperblockZeroed(t *testing.T) { faultSuperblock(t, "vpf-sb", false) }

// The same with the record's mark gone (a volume made before volumes were
// marked, or a mark that never reached volmaster): the check that a device
// is blank before its first mkfs refuses it.
func faultSuperblockZeroedUnmarked(t *testing.T) { faultSuperblock(t, "vpf-sbu", true) }

func faultSuperblock(t *testing.T, plugin string, unmark bool) {
	e := newFaultEnv(t, plugin, 3)
	a := e.startHost("hostA", "")
	const vol = "policy1/sb"
	e.createVolume(a, vol)
	if !e.formatted(vol) {
		t.Fatalf("%s is not marked formatted after its first mount", vol)
	}
	if unmark {
		e.unmarkFormatted(vol)
		waitFor(t, 10*time.Second, "volmaster to see the mark gone", func() bool { return !e.formatted(vol) })
	}
	f, err := os.OpenFile(e.image(vol), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1024), 1024); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var c faultCounts
	var refusal string
	for _, id := range []string{"c1", "c2"} {
		if _, errMsg := a.mount(t, vol, id); errMsg == "" {
			c.Reformats++ // it mounted: blkid found nothing, so mkfs ran
			a.unmount(t, vol, id)
			break
		} else {
			refusal = errMsg
		}
	}
	// The repair the refusal names (none if the volume was formatted anew).
	if m := regexp.MustCompile("`(e2fsck -b [0-9]+ -B [0-9]+ [^`]+)`").FindStringSubmatch(refusal); m != nil {
		argv := slices.Insert(strings.Fields(m[1]), 1, "-y")
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("%v: %v\n%s", argv, err, out)
			}
		}
	} else if refusal != "" {
		t.Errorf("the refusal names no e2fsck -b command: %q", refusal)
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	fault, step := "primary superblock zeroed", "mount (volume marked formatted)"
	if unmark {
		step = "mount (mark lost: blank check)"
	}
	recordRow(t, faultRow{Fault: fault, Step: step, Counts: c})
	if !e.formatted(vol) {
		t.Errorf("%s is not marked formatted after the repaired mount", vol)
	}
}

// formatted reads vol's record through volcli.
func (e *faultEnv) formatted(vol string) bool {
	e.t.Helper()
	out, errOut, code := volcli(e.t, e.vm.URL, "", "volume", "get", vol)
	if code != 0 {
		e.t.Fatalf("volume get %s: %s", vol, errOut)
	}
	var v config.Volume
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		e.t.Fatalf("volume get %s: %v", vol, err)
	}
	return v.Formatted()
}

// unmarkFormatted removes formatted-at from vol's record in etcd, as a record
// written before the mark existed.
func (e *faultEnv) unmarkFormatted(vol string) {
	e.t.Helper()
	cli := e.etcdClient()
	keys, _ := config.NewKeys("")
	ref, _ := config.ParseVolumeRef(vol)
	ctx := context.Background()
	resp, err := cli.Get(ctx, keys.Volume(ref))
	if err != nil || len(resp.Kvs) != 1 {
		e.t.Fatalf("read record of %s: %v", vol, err)
	}
	var rec map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		e.t.Fatal(err)
	}
	delete(rec, "formatted-at")
	b, _ := json.Marshal(rec)
	if _, err := cli.Put(ctx, keys.Volume(ref), string(b)); err != nil {
		e.t.Fatal(err)
	}
}
