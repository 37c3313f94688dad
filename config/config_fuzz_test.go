package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Native Go fuzz targets. `go test ./config` runs their seeds (f.Add and
// testdata/fuzz/<FuzzName>/) as ordinary tests; `make fuzz` fuzzes them.

// mustInvalid fails unless err wraps ErrInvalid: every input error must map to
// 400 invalid at the REST boundary.
func mustInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: error %q (%T) does not wrap ErrInvalid", what, err, err)
	}
}

// addOriginals adds every JSON file of the original project as a seed.
func addOriginals(f *testing.F, add func(data []byte)) {
	f.Helper()
	n := 0
	err := filepath.WalkDir(originals, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		add(data)
		n++
		return nil
	})
	if err != nil || n == 0 {
		f.Fatalf("seeds from %s: %d files, %v", originals, n, err)
	}
}

var fuzzPolicySeeds = []string{
	`{"backend":"local","create":{"size":"10MB"}}`,
	`{"backend":"nfs","driver":{"options":{"source":"host:/export"}}}`,
	`{"backends":{"crud":"ceph","mount":"ceph","snapshot":"ceph"},"create":{"size":"1GiB","filesystem":"xfs"}}`,
	`{"backend":"local","backends":{"crud":"local","mount":"local","snapshot":"local"},"create":{"size":"10MB"}}`,
	`{"backend":"local","create":{"size":"10MB","filesystem":"btrfs"},"filesystems":{"btrfs":["mkfs.btrfs","%"]}}`,
	`{"backend":"local","create":{"size":"10MB"},"filesystems":{}}`,
	`{"backend":"local","create":{"size":"10MB"},"driver":{"options":{}}}`,
	`{"backend":"local","create":{"size":"10MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"1h0m0s","keep":3},"rate-limit":{"read-bps":"1MB","write-bps":9007199254740993,"read-iops":18446744073709551615}}}`,
	`{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"720h"},"unlocked":true,"ephemeral":true}`,
	`{"backend":"local","create":{"size":"10MB"},"reclaim":{"unused-for":"1.5ns"}}`,
	`{"backend":"ceph","create":{"size":"1EB"},"driver":{"pool":"rbd"}}`,
	`{"backend":"local","create":{"size":" 10MB "}}`,
	`{"backend":"local","create":{"size":"10MB"},"filesystems":{"ext4":null}}`,
	`{"backend":"local","create":{"size":"10MB"}`,
	`{"backend":"local","create":{"size":"10MB"},"colour":"red"}`,
	`{"name":"other","backend":"local","create":{"size":"10MB"}}`,
	`{"backend":"local","create":{"size":"10MB"}} {}`,
	`null`,
	``,
	`{"backend":"l\u00f6cal"}`,
}

func FuzzDecodePolicy(f *testing.F) {
	addOriginals(f, func(data []byte) { f.Add("policy1", data) })
	for _, s := range fuzzPolicySeeds {
		f.Add("p", []byte(s))
	}
	f.Add("", []byte(fuzzPolicySeeds[0]))
	f.Add("a/b", []byte(fuzzPolicySeeds[0]))
	f.Add("..", []byte(fuzzPolicySeeds[0]))
	f.Add("pölicy", []byte(fuzzPolicySeeds[0]))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		p, err := DecodePolicy(name, data)
		if err != nil {
			mustInvalid(t, "DecodePolicy", err)
			return
		}
		if p.Name != name {
			t.Fatalf("name %q, want %q", p.Name, name)
		}
		if err := ValidateName("policy", p.Name); err != nil {
			t.Fatalf("accepted an invalid name: %v", err)
		}
		if p.Backend != "" {
			t.Fatalf("backend shorthand %q left after Normalize", p.Backend)
		}
		if p.Backends.CRUD != "" {
			if _, err := ParseSize(p.Create.Size); err != nil {
				t.Fatalf("crud backend with bad size: %v", err)
			}
			if _, ok := p.AllFilesystems()[p.Create.Filesystem]; !ok {
				t.Fatalf("filesystem %q undefined", p.Create.Filesystem)
			}
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal %+v: %v", p, err)
		}
		again, err := DecodePolicy(name, out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		// An empty "filesystems" or "driver.options" object decodes to an
		// empty map, which omitempty then drops, so it comes back nil: the
		// same meaning, compared as such.
		if !reflect.DeepEqual(nilEmptyMaps(again), nilEmptyMaps(p)) {
			t.Fatalf("round trip changed the policy:\n in: %#v\nout: %#v\njson: %s", p, again, out)
		}
	})
}

// nilEmptyMaps returns p with empty maps replaced by nil.
func nilEmptyMaps(p Policy) Policy {
	if len(p.FileSystems) == 0 {
		p.FileSystems = nil
	}
	if len(p.Driver.Options) == 0 {
		p.Driver.Options = nil
	}
	return p
}

var nameRefRE = regexp.MustCompile(NamePattern)

// checkName asserts the properties of an accepted name.
func checkName(t *testing.T, name string) {
	t.Helper()
	switch {
	case !nameRefRE.MatchString(name):
		t.Fatalf("accepted %q, which does not match NamePattern", name)
	case strings.ContainsRune(name, '/'):
		t.Fatalf("accepted %q with '/'", name)
	case name == "." || name == "..":
		t.Fatalf("accepted %q", name)
	case len(name) == 0 || len(name) > MaxNameLength:
		t.Fatalf("accepted %q of length %d", name, len(name))
	case !utf8.ValidString(name):
		t.Fatalf("accepted invalid UTF-8 %q", name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
			t.Fatalf("accepted %q with rune %U", name, r)
		}
	}
}

// refName is an independent statement of the name rule.
func refName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

var fuzzNameSeeds = []string{
	"policy1", "a", "A-b_c.d", "0", ".", "..", ".hidden", "-x", "_x", "a/b", "/", "a b", "a\n", "a\x00",
	"pölicy", "ａ", "a\u200b", strings.Repeat("x", 64), strings.Repeat("x", 65), "x\xff", "a..", "a$", "a\r\n",
}

func FuzzValidateName(f *testing.F) {
	for _, s := range fuzzNameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName("volume", name)
		if err != nil {
			mustInvalid(t, "ValidateName", err)
		} else {
			checkName(t, name)
		}
		if want := refName(name); want != (err == nil) {
			t.Fatalf("ValidateName(%q) = %v, reference rule says valid=%v", name, err, want)
		}
	})
}

func FuzzParseVolumeRef(f *testing.F) {
	for _, s := range fuzzNameSeeds {
		f.Add(s)
		f.Add("p/" + s)
		f.Add(s + "/v")
	}
	f.Add("p/v/w")
	f.Add("/")
	f.Add("//")
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseVolumeRef(s)
		policy, name, ok := strings.Cut(s, "/")
		want := ok && refName(policy) && refName(name)
		if want != (err == nil) {
			t.Fatalf("ParseVolumeRef(%q) = %v, reference rule says valid=%v", s, err, want)
		}
		if err != nil {
			mustInvalid(t, "ParseVolumeRef", err)
			if ref != (VolumeRef{}) {
				t.Fatalf("error with non-zero ref %+v", ref)
			}
			return
		}
		checkName(t, ref.Policy)
		checkName(t, ref.Name)
		if ref.String() != s || ref.Validate() != nil {
			t.Fatalf("ParseVolumeRef(%q) = %+v (String %q)", s, ref, ref.String())
		}
		again, err := ParseVolumeRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("re-parse of %q = %+v, %v", ref.String(), again, err)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{
		"10MB", "1GiB", "512k", "1048576", "1", "0", "-1", "-1MB", "", " ", "1.5GB", "0.5", "1.5.5", "10 MB",
		"1EB", "1024PB", "1025PB", "1PiB", "9223372036854775807", "9223372036854775808", "1e3", "99999999999999999999TB",
		"1b", "1iB", "NaN", "Inf", "0x10", " 10MB\n", "１MB",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			mustInvalid(t, "ParseSize", err)
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n <= 0 || n > MaxSize {
			t.Fatalf("ParseSize(%q) = %d, outside 1..MaxSize", s, n)
		}
		// The byte count itself is a valid size with the same meaning.
		if m, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("ParseSize(%d) = %d, %v", n, m, err)
		}
	})
}

func FuzzDecodeRuntime(f *testing.F) {
	addOriginals(f, func(data []byte) { f.Add(data) })
	for _, s := range []string{
		`{}`, `{"snapshots":false}`, `{"snapshots":true}`, `{"snapshots":true,"snapshot":{"frequency":"2s","keep":1}}`,
		`{"snapshot":{"frequency":"-1s"}}`, `{"snapshot":{"frequency":"1h0m0s","keep":0}}`, `{"snapshot":{"frequency":30}}`,
		`{"rate-limit":{"read-bps":"10MB","write-bps":18446744073709551615}}`, `{"rate-limit":{"read-bps":18446744073709551616}}`,
		`{"rate-limit":{"read-bps":-1}}`, `{"rate-limit":{"read-bps":1.5}}`, `{"rate-limit":{"read-bps":"1e3"}}`,
		`{"rate-limit":{"read-bps":"12"}}`, `{"rate-limit":{"read-bps":null}}`, `{"rate-limit":{"write-iops":1e2}}`,
		`{"snapshots":true,"snapshot":{"frequency":"2562047h47m16.854775807s","keep":18446744073709551615}}`,
		`{"snapshots":1}`, `[]`, `null`, ``, `{"snapshots":false}x`, `{"extra":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRuntime(data)
		if err != nil {
			mustInvalid(t, "DecodeRuntime", err)
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded runtime does not validate: %v", err)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal %+v: %v", r, err)
		}
		again, err := DecodeRuntime(out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip changed the runtime:\n in: %#v\nout: %#v\njson: %s", r, again, out)
		}
	})
}

func FuzzDecodeGlobal(f *testing.F) {
	addOriginals(f, func(data []byte) { f.Add(data) })
	for _, s := range []string{
		`{}`, `{"TTL":86400,"Timeout":1440,"MountPath":"/"}`, `{"TTL":86401}`, `{"TTL":-1}`, `{"Timeout":1441}`,
		`{"TTL":1e2}`, `{"TTL":9223372036854775808}`, `{"MountPath":"relative"}`, `{"MountPath":"/a/../b"}`,
		`{"MountPath":"/a/"}`, `{"MountPath":"/mnt/v\u00f6l"}`, `{"MountPath":"/mnt/\u0000"}`, `{"ttl":5}`,
		`{"Debug":true}`, `{"Debug":"true"}`, `null`, ``, `{}{}`, `{"TTL":5`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := DecodeGlobal(data)
		if err != nil {
			mustInvalid(t, "DecodeGlobal", err)
			return
		}
		n := g
		if err := n.Normalize(); err != nil || n != g {
			t.Fatalf("Normalize not idempotent: %+v -> %+v, %v", g, n, err)
		}
		if g.TTLDuration() <= 0 || g.TimeoutDuration() <= 0 || !filepath.IsAbs(g.MountPath) {
			t.Fatalf("accepted %+v", g)
		}
		out, err := json.Marshal(g)
		if err != nil {
			t.Fatalf("marshal %+v: %v", g, err)
		}
		again, err := DecodeGlobal(out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if again != g {
			t.Fatalf("round trip changed the global config:\n in: %+v\nout: %+v\njson: %s", g, again, out)
		}
	})
}

// FuzzPolicyLimits: a policy document and a volume's creation options.
// Whatever is accepted is within the policy's limits: a policy whose own
// size or runtime breaks them is refused, and so is a volume whose options
// do; refusals are ErrInvalid.
func FuzzPolicyLimits(f *testing.F) {
	for _, s := range [][2]string{
		{`{"backend":"local","create":{"size":"10MB"},"limits":{"max-size":"20MB","max-keep":3,"min-snapshot-frequency":"1h"}}`, "size=30MB"},
		{`{"backend":"local","create":{"size":"10MB"},"limits":{"max-size":"20MB"}}`, "size=20MB"},
		{`{"backend":"local","create":{"size":"40MB"},"limits":{"max-size":"20MB"}}`, ""},
		{`{"backend":"local","create":{"size":"1MB"},"limits":{"max-keep":2}}`, "snapshots=true,snapshot.frequency=1h,snapshot.keep=3"},
		{`{"backend":"local","create":{"size":"1MB"},"limits":{"min-snapshot-frequency":"1h"}}`, "snapshots=true,snapshot.frequency=1ns,snapshot.keep=1"},
		{`{"backend":"local","create":{"size":"1MB"},"runtime":{"snapshots":true,"snapshot":{"frequency":"2s","keep":1,"tiers":{"daily":9}}},"limits":{"max-keep":5}}`, ""},
		{`{"backend":"local","create":{"size":"1MB"},"limits":{"max-size":"-1"}}`, ""},
		{`{"backend":"local","create":{"size":"1MB"},"limits":{"max-total-size":"1e400"}}`, ""},
	} {
		f.Add([]byte(s[0]), s[1])
	}
	f.Fuzz(func(t *testing.T, doc []byte, opts string) {
		p, err := DecodePolicy("p", doc)
		if err != nil {
			mustInvalid(t, "DecodePolicy", err)
			return
		}
		if p.Create.Size != "" {
			n, err := ParseSize(p.Create.Size)
			if err != nil || p.Limits.CheckSize(n) != nil {
				t.Fatalf("accepted policy's create.size %q breaks its limits %+v", p.Create.Size, p.Limits)
			}
		}
		if err := p.Limits.CheckRuntime(p.Runtime); err != nil {
			t.Fatalf("accepted policy's runtime breaks its limits: %v", err)
		}
		o := map[string]string{}
		for _, kv := range strings.Split(opts, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				o[k] = v
			}
		}
		v, err := NewVolume(VolumeRef{Policy: "p", Name: "v"}, p, 1, o, time.Unix(0, 0))
		if err != nil {
			mustInvalid(t, "NewVolume", err)
			return
		}
		if n, err := v.SizeBytes(); err != nil || p.Limits.CheckSize(n) != nil {
			t.Fatalf("accepted volume of %q breaks max-size %q", v.Create.Size, p.Limits.MaxSize)
		}
		if err := p.Limits.CheckRuntime(v.Runtime); err != nil {
			t.Fatalf("accepted volume's runtime breaks its policy's limits: %v", err)
		}
		if v.Runtime.Snapshots && v.Runtime.Snapshot.Frequency.D() < MinSnapshotFrequency {
			t.Fatalf("accepted snapshot frequency %s", v.Runtime.Snapshot.Frequency)
		}
	})
}

// FuzzFSCommand: whatever the allowlist accepts runs one of its programs,
// gives it the device exactly once (none for false), and no word that could
// name a file to read or write beside the device, or reach a shell.
func FuzzFSCommand(f *testing.F) {
	for _, s := range []string{
		"mkfs.ext4 -m0 %", "mkfs.ext4 -m 0 %", "/sbin/mkfs.xfs -f -m crc=1 %", "mkfs.btrfs %", "/bin/false",
		"sh -c id %", "mkfs.ext4 -d /etc %", "mkfs.ext4 % %", "mkfs.xfs -p /x %", "mkfs.ext4 -E root_owner=0:0 %",
		"mkfs.ext4 -L a;b %", "/usr/bin/../../tmp/x %", "mkfs.ext4 -m", "false %",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cmd := FSCommand(strings.Split(s, " "))
		if err := CheckFSCommand(cmd); err != nil {
			mustInvalid(t, "CheckFSCommand", err)
			return
		}
		base := cmd[0]
		if i := strings.LastIndex(base, "/"); i >= 0 {
			base = base[i+1:]
		}
		if _, ok := mkfsRules[base]; !ok {
			t.Fatalf("accepted program %q", cmd[0])
		}
		devices := 0
		for _, w := range cmd[1:] {
			if w == DevicePlaceholder {
				devices++
			}
			if strings.ContainsAny(w, "/;$`|&<> \t\n\\\"'*?~") {
				t.Fatalf("accepted word %q in %q", w, s)
			}
		}
		if want := map[bool]int{true: 1, false: 0}[mkfsRules[base].device]; devices != want {
			t.Fatalf("accepted %q with %d devices", s, devices)
		}
	})
}
