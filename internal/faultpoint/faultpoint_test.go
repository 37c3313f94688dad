package faultpoint

import (
	"context"
	"testing"
	"time"
)

// Without the faults tag Hit returns at once even for the named step; with
// it, only the step the environment names blocks, until its context ends.
func TestHit(t *testing.T) {
	t.Setenv(Env, "other@p/w,step@p/v")
	Hit(context.Background(), "other", "p/v")
	Hit(context.Background(), "step", "p/w")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Hit(ctx, "step", "p/v"); close(done) }()
	select {
	case <-done:
		if Enabled {
			t.Fatal("the named step did not block")
		}
	case <-time.After(200 * time.Millisecond):
		if !Enabled {
			t.Fatal("the named step blocked without the faults tag")
		}
	}
	cancel()
	<-done
}

func TestMatch(t *testing.T) {
	for _, c := range []struct{ list, name, subject, want string }{
		{"a", "a", "p/v", "a"},
		{"a@p/v", "a", "p/v", "a@p/v"},
		{"a@p/v", "a", "p/w", ""},
		{"b,a@p/w", "a", "p/w", "a@p/w"},
		{"", "a", "p/v", ""},
		{"ab", "a", "p/v", ""},
	} {
		if got := match(c.list, c.name, c.subject); got != c.want {
			t.Errorf("match(%q, %q, %q) = %q, want %q", c.list, c.name, c.subject, got, c.want)
		}
	}
}
