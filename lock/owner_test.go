package lock

import (
	"context"
	"errors"
	"testing"

	"github.com/volplugin/volplugin/config"
)

func TestLeaseHost(t *testing.T) {
	m, _ := setup(t)
	ctx := context.Background()
	first, err := m.Grant(ctx, "hostA", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := m.LeaseHost(ctx, first.ID, ""); err != nil || h != "hostA" {
		t.Errorf("LeaseHost(first) = %q, %v; want hostA", h, err)
	}
	b, err := m.Grant(ctx, "hostB", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := m.LeaseHost(ctx, b.ID, ""); err != nil || h != "hostB" {
		t.Errorf("LeaseHost(b) = %q, %v; want hostB", h, err)
	}
	// A new grant moves hostA's record to the new lease: the old one, still
	// alive, belongs to no host any more.
	second, err := m.Grant(ctx, "hostA", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := m.LeaseHost(ctx, second.ID, ""); err != nil || h != "hostA" {
		t.Errorf("LeaseHost(second) = %q, %v; want hostA", h, err)
	}
	if h, err := m.LeaseHost(ctx, first.ID, ""); err != nil || h != "" {
		t.Errorf("LeaseHost(superseded) = %q, %v; want no host", h, err)
	}
	// A lease that is not a host lease (say, an election session's).
	raw, err := m.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := m.LeaseHost(ctx, int64(raw.ID), ""); err != nil || h != "" {
		t.Errorf("LeaseHost(raw) = %q, %v; want no host", h, err)
	}
	if err := m.Revoke(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if h, err := m.LeaseHost(ctx, b.ID, ""); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("LeaseHost(revoked) = %q, %v; want ErrNotFound", h, err)
	}
}

// The hint answers from the host's record when it is on the lease, and
// falls back to the lease's keys when it is not (a wrong or stale hint never
// makes another host's lease look like the hint's).
func TestLeaseHostHint(t *testing.T) {
	m, _ := setup(t)
	ctx := t.Context()
	a, err := m.Grant(ctx, "hostA", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Grant(ctx, "hostB", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id         int64
		hint, want string
	}{
		{a.ID, "hostA", "hostA"}, {a.ID, "hostB", "hostA"}, {b.ID, "hostA", "hostB"}, {b.ID, "nohost", "hostB"},
	} {
		if h, err := m.LeaseHost(ctx, c.id, c.hint); err != nil || h != c.want {
			t.Errorf("LeaseHost(%d, hint %s) = %q, %v; want %s", c.id, c.hint, h, err, c.want)
		}
	}
	if err := m.Revoke(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LeaseHost(ctx, a.ID, "hostA"); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("LeaseHost(revoked, its own hint) = %v, want ErrNotFound", err)
	}
}

// Each daemon of a host has its own lease record, so one daemon's new
// lease does not leave the other's lease without a host (which --auth
// would then refuse to renew).
func TestLeaseHostOfTwoDaemonsOnOneHost(t *testing.T) {
	m, _ := setup(t)
	ctx := t.Context()
	plugin, err := m.Grant(ctx, "node1", "volplugin.01020304", 30)
	if err != nil {
		t.Fatal(err)
	}
	csi, err := m.Grant(ctx, "node1", "volcsi.01020304", 30)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Grant(ctx, "node1-b", "", 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id         int64
		hint, want string
	}{
		{plugin.ID, "node1", "node1"}, {csi.ID, "node1", "node1"}, {plugin.ID, "", "node1"}, {csi.ID, "", "node1"},
		{other.ID, "node1", "node1-b"}, {plugin.ID, "node1-b", "node1"},
	} {
		if h, err := m.LeaseHost(ctx, c.id, c.hint); err != nil || h != c.want {
			t.Errorf("LeaseHost(%d, hint %q) = %q, %v; want %s", c.id, c.hint, h, err, c.want)
		}
	}
}
