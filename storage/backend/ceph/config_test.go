package ceph

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/storage"
)

func TestImageName(t *testing.T) {
	for _, tc := range []struct{ policy, name, want string }{
		{"pol", "vol", "pol:vol"},
		{"a.b", "c", "a.b:c"},
		{"a", "b.c", "a:b.c"},
		{"p-1_x", "v.2-y_", "p-1_x:v.2-y_"},
	} {
		got, err := ImageName(tc.policy, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ImageName(%q, %q) = %q, %v; want %q", tc.policy, tc.name, got, err, tc.want)
		}
		back, ok := ParseImageName(got)
		if !ok || back != (storage.ID{Policy: tc.policy, Name: tc.name}) {
			t.Errorf("ParseImageName(%q) = %+v, %v", got, back, ok)
		}
	}
	for _, bad := range [][2]string{{"", "v"}, {"p", ""}, {"a:b", "c"}, {"p", "a/b"}, {"..", "v"}, {"p", ".x"}} {
		if _, err := ImageName(bad[0], bad[1]); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("ImageName(%q, %q) = %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
	for _, foreign := range []string{"plain", "a:b:c", ":v", "p:", "p:.v", "-p:v"} {
		if id, ok := ParseImageName(foreign); ok {
			t.Errorf("ParseImageName(%q) = %+v, want not ours", foreign, id)
		}
	}
}

// TestImageNamesDoNotCollide checks names built from every split of a dotted
// string: with ':' as the separator no two differ only in where the policy
// ends.
func TestImageNamesDoNotCollide(t *testing.T) {
	seen := map[string]storage.ID{}
	for _, pn := range [][2]string{{"a.b", "c"}, {"a", "b.c"}, {"a.b.c", "d"}, {"a", "b.c.d"}, {"a-b", "c"}, {"a", "b-c"}} {
		id := storage.ID{Policy: pn[0], Name: pn[1]}
		n, err := ImageName(id.Policy, id.Name)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[n]; dup {
			t.Fatalf("%+v and %+v both map to %q", id, other, n)
		}
		seen[n] = id
	}
}

func TestConfigNormalize(t *testing.T) {
	cfg, err := Config{}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MountRoot != config.DefaultMountPath || cfg.RunDir != DefaultRunDir || !slices.Equal(cfg.Pools, []string{"rbd"}) ||
		cfg.Timeout != DefaultTimeout || cfg.OpTimeout != DefaultOpTimeout || cfg.Mapper != "auto" ||
		!slices.Equal(cfg.Features, DefaultFeatures()) {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, bad := range []Config{
		{MountRoot: "rel"}, {RunDir: "rel"}, {Pools: []string{"a/b"}}, {Timeout: -time.Second},
	} {
		if _, err := bad.normalize(); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("normalize(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestClientAndFeatures(t *testing.T) {
	cfg := Config{Conf: "/c", User: "u", Features: []string{"layering"}}
	v := storage.Volume{Options: map[string]string{OptUser: "other", OptKeyring: "/k", OptFeatures: "layering, exclusive-lock"}}
	if c := cfg.clientFor(v); c != (client{conf: "/c", keyring: "/k", user: "other"}) {
		t.Errorf("clientFor = %+v", c)
	}
	if c := cfg.clientFor(storage.Volume{}); c != (client{conf: "/c", user: "u"}) {
		t.Errorf("clientFor(no options) = %+v", c)
	}
	if f := cfg.features(v); !slices.Equal(f, []string{"layering", "exclusive-lock"}) {
		t.Errorf("features = %q", f)
	}
}
