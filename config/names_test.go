package config

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "policy1", "pg-data_2", "v1.2", "A", strings.Repeat("x", 64)}
	for _, n := range good {
		if err := ValidateName("volume", n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want ok", n, err)
		}
	}
	bad := []string{"", ".", "..", "a/b", "/a", "a b", " a", "a\n", "a\x00b", "-a", "_a", ".hidden",
		"a:b", "ümlaut", strings.Repeat("x", 65), "a\tb"}
	for _, n := range bad {
		err := ValidateName("volume", n)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestParseVolumeRef(t *testing.T) {
	r, err := ParseVolumeRef("policy1/db")
	if err != nil || r.Policy != "policy1" || r.Name != "db" || r.String() != "policy1/db" {
		t.Fatalf("ParseVolumeRef = %+v, %v", r, err)
	}
	for _, s := range []string{"nopolicy", "/x", "p/", "p/a/b", "../x", "p/..", "a b/c"} {
		if _, err := ParseVolumeRef(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseVolumeRef(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	cases := map[string]int64{
		"10MB": 10 << 20, "10M": 10 << 20, "1GiB": 1 << 30, "1gb": 1 << 30, "512k": 512 << 10,
		"1048576": 1 << 20, " 2MiB ": 2 << 20, "1.5GiB": 3 << 29, "9007199254740993": 9007199254740993,
	}
	for in, want := range cases {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0MB", "-1", "-5MB", "lots", "10XB", "1.2.3MB", "99999999999999999999TB", "2EB", "MB"} {
		if n, err := ParseSize(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrInvalid", in, n, err)
		}
	}
}

func TestKeysLayout(t *testing.T) {
	k, err := NewKeys("")
	if err != nil {
		t.Fatal(err)
	}
	ref := VolumeRef{Policy: "p", Name: "v"}
	if got := k.Volume(ref); got != "/volplugin/volumes/p/v" {
		t.Errorf("Volume key = %q", got)
	}
	if got, ok := k.ParseRef(k.Volumes(), k.Volume(ref)); !ok || got != ref {
		t.Errorf("ParseRef = %v, %v", got, ok)
	}
	if _, ok := k.ParseRef(k.Volumes(), "/volplugin/volumes/p"); ok {
		t.Error("ParseRef accepted a key without a volume name")
	}
	if n, ok := k.ParsePolicyRevision("p", k.PolicyRevision("p", 42)); !ok || n != 42 {
		t.Errorf("ParsePolicyRevision = %d, %v", n, ok)
	}
	// Revision keys must sort numerically as strings.
	if k.PolicyRevision("p", 9) >= k.PolicyRevision("p", 10) {
		t.Error("revision keys do not sort numerically")
	}
	for _, p := range []string{"volplugin", "/", "/a/../b", "/a/"} {
		if _, err := NewKeys(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewKeys(%q) = %v, want ErrInvalid", p, err)
		}
	}
}
