package faultpoint

import (
	"context"
	"testing"
	"time"
)

// Without the faults tag Hit returns at once even for the named step; with
// it, only the step the environment names blocks.
func TestHit(t *testing.T) {
	t.Setenv(Env, "step")
	Hit(context.Background(), "other")
	done := make(chan struct{})
	go func() { Hit(context.Background(), "step"); close(done) }()
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
}
