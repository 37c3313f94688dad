package store

import (
	"context"
	"slices"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// The cache's sorted list of names follows every create and remove, for
// all policies and for one (a policy's volumes are one run of the list).
func TestCacheVolumeRefsFollowChanges(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := s.NewCache()
	go c.Run(ctx)
	lease, _ := s.Client().Grant(ctx, 30)
	h := Holder{Lease: lease.ID, Owner: "test"}
	create := func(ref config.VolumeRef) {
		t.Helper()
		createVolume(t, s, ref)
	}
	want := func(policy string, names ...string) {
		t.Helper()
		rev, _ := s.Client().Get(ctx, "/")
		if err := c.WaitRevision(ctx, rev.Header.Revision); err != nil {
			t.Fatal(err)
		}
		got, err := c.VolumeRefs(policy)
		if err != nil {
			t.Fatal(err)
		}
		var gotNames []string
		for _, r := range got {
			gotNames = append(gotNames, r.String())
		}
		if !slices.Equal(gotNames, names) {
			t.Errorf("VolumeRefs(%q) = %v, want %v", policy, gotNames, names)
		}
	}
	want("")
	for _, r := range []string{"b/2", "a/1", "b/1", "c/9"} {
		ref, _ := config.ParseVolumeRef(r)
		create(ref)
	}
	want("", "a/1", "b/1", "b/2", "c/9")
	want("b", "b/1", "b/2")
	want("nope")
	// A removal and a new volume both show at the next list.
	gone := config.VolumeRef{Policy: "b", Name: "1"}
	if _, err := s.BeginRemove(ctx, gone, h, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRemove(ctx, gone, h); err != nil {
		t.Fatal(err)
	}
	create(config.VolumeRef{Policy: "a", Name: "0"})
	want("", "a/0", "a/1", "b/2", "c/9")
	want("a", "a/0", "a/1")
	// A list is the caller's: changing it changes nothing in the cache.
	got, _ := c.VolumeRefs("")
	got[0].Name = "changed"
	want("a", "a/0", "a/1")
}
