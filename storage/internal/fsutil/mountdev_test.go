package fsutil

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// Undo runs its steps newest first, only after a failure, even with the
// context cancelled, and keeps the failure with the steps' own errors.
func TestUndoRunsNewestFirstOnFailure(t *testing.T) {
	var ran []string
	var u Undo
	u.Push(func(context.Context) error { ran = append(ran, "detach"); return nil })
	u.Push(func(ctx context.Context) error {
		ran = append(ran, "rmdir")
		if ctx.Err() != nil {
			t.Error("a rollback step saw the cancelled context")
		}
		return errors.New("rmdir failed")
	})
	if err := u.Run(context.Background(), nil); err != nil || len(ran) != 0 {
		t.Fatalf("Run after success: %v, ran %v; want nothing", err, ran)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cause := errors.New("mount failed")
	err := u.Run(ctx, cause)
	if !slices.Equal(ran, []string{"rmdir", "detach"}) {
		t.Errorf("ran %v, want rmdir then detach", ran)
	}
	if !errors.Is(err, cause) || err.Error() != "mount failed\nrollback: rmdir failed" {
		t.Errorf("Run = %q, want the cause and the failed step", err)
	}
}
