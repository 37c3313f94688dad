package vollock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/volplugin/volplugin/storage"
)

func TestLockHonoursContext(t *testing.T) {
	var l Locker
	unlock, err := l.Lock(context.Background(), "p", "v")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "p", "v"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock: %v, want deadline exceeded", err)
	}
	// Another volume is not blocked.
	u2, err := l.Lock(context.Background(), "p", "w")
	if err != nil {
		t.Fatal(err)
	}
	u2()
	unlock()
	unlock() // idempotent
	u3, err := l.Lock(context.Background(), "p", "v")
	if err != nil {
		t.Fatal(err)
	}
	u3()
	if len(l.m) != 0 {
		t.Fatalf("%d entries left, want 0", len(l.m))
	}
}

func TestLockPairBothOrders(t *testing.T) {
	var l Locker
	a, b := storage.ID{Policy: "p", Name: "a"}, storage.ID{Policy: "p", Name: "b"}
	done := make(chan struct{})
	for i := range 2 {
		go func() {
			for range 200 {
				x, y := a, b
				if i == 1 {
					x, y = b, a
				}
				u, err := l.LockPair(context.Background(), x, y)
				if err != nil {
					t.Error(err)
					return
				}
				u()
			}
			done <- struct{}{}
		}()
	}
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("deadlock")
		}
	}
	u, err := l.LockPair(context.Background(), a, a)
	if err != nil {
		t.Fatal(err)
	}
	u()
}

// Hold waits for the holder like Lock and never gives up.
func TestHoldWaitsForTheHolder(t *testing.T) {
	var l Locker
	unlock, err := l.Lock(context.Background(), "p", "v")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan func(), 1)
	go func() { held <- l.Hold("p", "v") }()
	// Wait until Hold is queued behind the holder (two refs on the entry).
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		refs := l.m[storage.ID{Policy: "p", Name: "v"}].refs
		l.mu.Unlock()
		if refs == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Hold never queued: %d refs", refs)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	select {
	case <-held:
		t.Fatal("Hold returned while another holds the volume")
	default:
	}
	other := l.Hold("p", "w") // another volume is not held up
	other()
	unlock()
	(<-held)()
}
