package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const originals = "testdata/original-policies"

// Every policy file of the original project must upload and keep its meaning.
func TestOriginalPolicies(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(originals, "*", "*.json"))
	var n int
	for _, f := range files {
		if strings.Contains(f, "globals") {
			continue
		}
		n++
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := DecodePolicy("policy1", data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if p.Name != "policy1" {
			t.Errorf("%s: name %q, want the uploaded name", f, p.Name)
		}
		if strings.Contains(f, "/ceph/") && (p.Backends != Backends{CRUD: "ceph", Mount: "ceph", Snapshot: "ceph"} || p.Driver.Pool == "") {
			t.Errorf("%s: backends %+v pool %q", f, p.Backends, p.Driver.Pool)
		}
		if strings.Contains(f, "/nfs/") && p.Backends.Mount != "nfs" {
			t.Errorf("%s: backends %+v", f, p.Backends)
		}
	}
	if n < 10 {
		t.Fatalf("only %d original policy files found", n)
	}
}

func TestPolicyMeaning(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(originals, "ceph", "fs.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePolicy("fs", data)
	if err != nil {
		t.Fatal(err)
	}
	if p.Create.Size != "10MB" || p.Create.Filesystem != "btrfs" || !p.Runtime.Snapshots ||
		p.Runtime.Snapshot.Frequency.D() != 30*time.Minute || p.Runtime.Snapshot.Keep != 20 {
		t.Errorf("fs.json read as %+v", p)
	}
	if got := p.FileSystems["ext4"]; !reflect.DeepEqual(got, FSCommand{"mkfs.ext4", "-m0", "%"}) {
		t.Errorf("ext4 command = %q", got)
	}
	if got := p.FileSystems["ext4"].Argv("/dev/loop1"); !reflect.DeepEqual(got, []string{"mkfs.ext4", "-m0", "/dev/loop1"}) {
		t.Errorf("Argv = %q", got)
	}
	// Round trip: what volmaster returns can be uploaded again unchanged.
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodePolicy("fs", out)
	if err != nil {
		t.Fatalf("re-upload of %s: %v", out, err)
	}
	if !reflect.DeepEqual(again, p) {
		t.Errorf("round trip changed the policy:\n%+v\n%+v", p, again)
	}
	if !strings.Contains(string(out), `"frequency":"30m"`) {
		t.Errorf("frequency not written as 30m: %s", out)
	}
}

func TestPolicyRejects(t *testing.T) {
	bad := map[string]string{
		"empty":            ``,
		"not json":         `{`,
		"trailing":         `{"backend":"local","create":{"size":"10MB"}} {}`,
		"unknown field":    `{"backend":"local","create":{"size":"10MB"},"runtme":{}}`,
		"no backend":       `{"create":{"size":"10MB"}}`,
		"unknown backend":  `{"backend":"zfs","create":{"size":"10MB"}}`,
		"mixed backends":   `{"backends":{"crud":"ceph","mount":"local"},"create":{"size":"10MB"}}`,
		"nfs crud":         `{"backends":{"crud":"nfs","mount":"nfs"}}`,
		"conflict":         `{"backend":"ceph","backends":{"crud":"local","mount":"local","snapshot":"local"},"create":{"size":"1MB"}}`,
		"no size":          `{"backend":"local"}`,
		"zero size":        `{"backend":"local","create":{"size":"0"}}`,
		"bad size":         `{"backend":"local","create":{"size":"big"}}`,
		"unknown fs":       `{"backend":"local","create":{"size":"10MB","filesystem":"zfs"}}`,
		"empty fs command": `{"backend":"local","create":{"size":"10MB"},"filesystems":{"ext4":""}}`,
		"snap no freq":     `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"keep":2}}}`,
		"snap no keep":     `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1m"}}}`,
		"bad freq":         `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"often","keep":1}}}`,
		"negative freq":    `{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshot":{"frequency":"-1m"}}}`,
		"negative rate":    `{"backend":"local","create":{"size":"10MB"},"runtime":{"rate-limit":{"read-bps":-1}}}`,
		"bad pool":         `{"backend":"ceph","create":{"size":"10MB"},"driver":{"pool":"a/b"}}`,
		"array":            `[]`,
		// Two hosts mounting one block image corrupt it; unlocked mounts
		// leave no usage record, so "unused" cannot be proven.
		"unlocked local":      `{"backend":"local","create":{"size":"10MB"},"unlocked":true}`,
		"unlocked ceph":       `{"backend":"ceph","create":{"size":"10MB"},"unlocked":true}`,
		"unlocked ephemeral":  `{"backend":"nfs","unlocked":true,"ephemeral":true}`,
		"unlocked reclaim":    `{"backend":"nfs","unlocked":true,"reclaim":{"unused-for":"1h"}}`,
		"unlocked reclaim on": `{"backend":"nfs","unlocked":true,"reclaim":{"unused-for":"1h","enabled":true}}`,
	}
	for name, doc := range bad {
		if _, err := DecodePolicy("p", []byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: DecodePolicy = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodePolicy("a/b", []byte(`{"backend":"local","create":{"size":"1MB"}}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad policy name accepted: %v", err)
	}
}

func TestNewVolumeOptions(t *testing.T) {
	p, err := DecodePolicy("p", []byte(`{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1m","keep":3}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ref := VolumeRef{Policy: "p", Name: "v"}
	v, err := NewVolume(ref, p, 7, map[string]string{
		"size": "1GiB", "snapshot.keep": "5", "rate-limit.write-bps": "10MB", "rate-limit.read-iops": "100", "ephemeral": "true",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if v.Create.Size != "1GiB" || v.Runtime.Snapshot.Keep != 5 || v.Runtime.RateLimit.WriteBPS != 10<<20 ||
		v.Runtime.RateLimit.ReadIOPS != 100 || !v.Ephemeral || v.PolicyRevision != 7 || v.Create.Filesystem != "ext4" {
		t.Errorf("volume = %+v", v)
	}
	if p.Create.Size != "10MB" {
		t.Error("options changed the policy")
	}
	// 0 is unlimited, as in the runtime JSON (docs/policy-reference.md).
	v, err = NewVolume(ref, p, 7, map[string]string{"rate-limit.read-bps": "0", "rate-limit.write-bps": "0"}, time.Now())
	if err != nil || v.Runtime.RateLimit.ReadBPS != 0 || v.Runtime.RateLimit.WriteBPS != 0 {
		t.Errorf("rate 0: %v, %+v, want unlimited", err, v.Runtime.RateLimit)
	}
	for _, opts := range []map[string]string{
		{"size": "0"}, {"size": "-1"}, {"colour": "red"}, {"snapshots": "maybe"},
		{"snapshot.keep": "-2"}, {"filesystem": "zfs"}, {"snapshot.frequency": "0s"},
	} {
		if _, err := NewVolume(ref, p, 1, opts, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("options %v: %v, want ErrInvalid", opts, err)
		}
	}
}

func TestGlobalAndRuntimeFiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(originals, "globals", "*.json"))
	if len(files) == 0 {
		t.Fatal("no global files")
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		g, err := DecodeGlobal(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if g.TTL < 1 || g.Timeout < 1 || g.MountPath == "" {
			t.Errorf("%s: %+v", f, g)
		}
	}
	g, _ := DecodeGlobal([]byte(`{"TTL": 5, "Timeout": 1, "Debug": true}`))
	if g.TTLDuration() != 5*time.Second || g.TimeoutDuration() != time.Minute || !g.Debug {
		t.Errorf("global = %+v", g)
	}
	for _, doc := range []string{`{"TTL": -1}`, `{"TTL": "x"}`, `{"MountPath": "rel"}`, `{"Bogus": 1}`, ``} {
		if _, err := DecodeGlobal([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("global %q: %v, want ErrInvalid", doc, err)
		}
	}
	for _, f := range []string{"runtime1.json", "iops1.json"} {
		data, _ := os.ReadFile(filepath.Join(originals, f))
		if _, err := DecodeRuntime(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	rt, _ := DecodeRuntime([]byte(`{"rate-limit":{"write-bps":1000,"read-bps":"1MB"}}`))
	if rt.RateLimit.WriteBPS != 1000 || rt.RateLimit.ReadBPS != 1<<20 {
		t.Errorf("runtime = %+v", rt)
	}
}

// unlocked is for nfs only, never with ephemeral or reclaim; a policy stored
// before that rule still reads, but no volume is created from it, and the
// ephemeral option cannot make an unlocked volume ephemeral.
func TestUnlockedRules(t *testing.T) {
	for _, doc := range []string{
		`{"backend":"nfs","unlocked":true}`,
		`{"backends":{"mount":"nfs"},"unlocked":true,"driver":{"options":{"source":"srv:/x"}}}`,
		`{"backend":"nfs","ephemeral":true,"reclaim":{"unused-for":"1h","enabled":true}}`,
		`{"backend":"local","create":{"size":"10MB"},"ephemeral":true,"reclaim":{"unused-for":"1h"}}`,
	} {
		if _, err := DecodePolicy("p", []byte(doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
	_, err := DecodePolicy("p", []byte(`{"backend":"local","create":{"size":"10MB"},"unlocked":true}`))
	if err == nil || !strings.Contains(err.Error(), "only on the mount-only shared backend nfs") {
		t.Errorf("unlocked local: %v", err)
	}
	ref := VolumeRef{Policy: "p", Name: "v"}
	nfs, _ := DecodePolicy("p", []byte(`{"backend":"nfs","unlocked":true}`))
	if _, err := NewVolume(ref, nfs, 1, nil, time.Now()); err != nil {
		t.Errorf("unlocked nfs volume: %v", err)
	}
	if _, err := NewVolume(ref, nfs, 1, map[string]string{"ephemeral": "true"}, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("unlocked nfs volume with ephemeral=true: %v, want ErrInvalid", err)
	}
	// A policy stored before the rule (not normalized again when read).
	var legacy Policy
	if err := json.Unmarshal([]byte(`{"name":"p","backends":{"crud":"local","mount":"local","snapshot":"local"},`+
		`"create":{"size":"10MB","filesystem":"ext4"},"unlocked":true}`), &legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVolume(ref, legacy, 1, nil, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("volume from a stored unlocked local policy: %v, want ErrInvalid", err)
	}
}
