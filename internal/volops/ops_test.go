package volops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// Call bounds a backend call by the timeout, reports it, and makes a call
// cut off by the timeout unavailable (503), keeping the cause.
func TestCallTimeoutIsUnavailable(t *testing.T) {
	var seen []string
	ops := &Ops{Timeout: 50 * time.Millisecond, Observe: func(backend, op string, _ time.Time, err error) {
		seen = append(seen, backend+"/"+op+"/"+errString(err))
	}}
	err := ops.Call(context.Background(), "local", "create", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, config.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out call: %v, want unavailable wrapping the deadline", err)
	}
	if err := ops.Call(context.Background(), "local", "resize", func(context.Context) error { return nil }); err != nil {
		t.Errorf("call: %v", err)
	}
	other := errors.New("boom")
	if err := ops.Call(context.Background(), "local", "trash", func(context.Context) error { return other }); err != other {
		t.Errorf("failed call: %v, want the backend's error unchanged", err)
	}
	want := []string{"local/create/" + context.DeadlineExceeded.Error(), "local/resize/", "local/trash/boom"}
	if len(seen) != len(want) {
		t.Fatalf("observed %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("observed %q, want %q", seen, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
