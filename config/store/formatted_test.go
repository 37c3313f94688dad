package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

func createdVolume(t *testing.T, s *Store, name string) (config.Volume, Holder) {
	t.Helper()
	ctx := context.Background()
	p := policy(t, "p", `{"backend":"local","create":{"size":"10MB"}}`)
	v, err := config.NewVolume(config.VolumeRef{Policy: "p", Name: name}, p, 1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lease, err := s.Client().Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	h := Holder{Lease: lease.ID, Owner: "test"}
	if _, err := s.CreateVolume(ctx, v, h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseOp(ctx, v.Ref(), h); err != nil {
		t.Fatal(err)
	}
	return v, h
}

func TestMarkFormatted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	v, _ := createdVolume(t, s, "v")
	ref := v.Ref()

	// Another incarnation of the name (created at another time): refused.
	if _, _, err := s.MarkFormatted(ctx, ref, v.CreatedAt.Add(-time.Hour), time.Now()); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("MarkFormatted(other created-at) = %v, want ErrNotFound", err)
	}
	if got, _ := s.GetVolume(ctx, ref); got.Formatted() {
		t.Fatal("a refused mark marked the volume")
	}

	// Concurrent marks (a retried request): one write, one time for all.
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	got := make([]config.Volume, 4)
	revs := make([]int64, len(got))
	for i := range got {
		wg.Go(func() {
			var err error
			got[i], revs[i], err = s.MarkFormatted(ctx, ref, v.CreatedAt, at.Add(time.Duration(i)*time.Second))
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	writes := 0
	for i := range got {
		if revs[i] != 0 {
			writes++
		}
		if !got[i].FormattedAt.Equal(got[0].FormattedAt) || !got[i].Formatted() {
			t.Errorf("mark %d: formatted-at %s, mark 0: %s", i, got[i].FormattedAt, got[0].FormattedAt)
		}
	}
	if writes != 1 {
		t.Errorf("%d marks wrote, want 1", writes)
	}
	stored, err := s.GetVolume(ctx, ref)
	if err != nil || !stored.FormattedAt.Equal(got[0].FormattedAt) {
		t.Fatalf("GetVolume = %+v, %v; want formatted at %s", stored, err, got[0].FormattedAt)
	}
	// Zero created-at: not checked; already marked: nothing written.
	if again, rev, err := s.MarkFormatted(ctx, ref, time.Time{}, time.Now()); err != nil || rev != 0 || !again.FormattedAt.Equal(stored.FormattedAt) {
		t.Fatalf("MarkFormatted again = %s, rev %d, %v; want the first mark, no write", again.FormattedAt, rev, err)
	}

	if _, err := s.ForceRemove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MarkFormatted(ctx, ref, time.Time{}, time.Now()); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("MarkFormatted(removed) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetVolume(ctx, ref); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("the mark of a removed volume wrote a record: %v", err)
	}
}

// A host marks the volume formatted while a resize holds it (read before
// the mark): the resize keeps the mark.
func TestFinishResizeKeepsFormatted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	v, h := createdVolume(t, s, "v")
	ref := v.Ref()
	locked, err := s.BeginOp(ctx, ref, "resize", h, false)
	if err != nil {
		t.Fatal(err)
	}
	marked, rev, err := s.MarkFormatted(ctx, ref, v.CreatedAt, time.Now())
	if err != nil || rev == 0 {
		t.Fatalf("MarkFormatted during a resize = rev %d, %v", rev, err)
	}
	grown, _, err := locked.Grow("20MB", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishResize(ctx, grown, h); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetVolume(ctx, ref)
	if err != nil || got.Create.Size != "20MB" || !got.FormattedAt.Equal(marked.FormattedAt) {
		t.Fatalf("after the resize: size %s, formatted-at %s, %v; want 20MB, %s", got.Create.Size, got.FormattedAt, err, marked.FormattedAt)
	}

	// A resize whose lock went is still refused.
	if _, err := s.BeginOp(ctx, ref, "resize", h, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Revoke(ctx, h.Lease); err != nil {
		t.Fatal(err)
	}
	grown, _, _ = got.Grow("30MB", time.Now())
	if _, err := s.FinishResize(ctx, grown, h); !errors.Is(err, config.ErrInUse) {
		t.Fatalf("FinishResize without the lock = %v, want ErrInUse", err)
	}
	if got, _ := s.GetVolume(ctx, ref); got.Create.Size != "20MB" {
		t.Fatalf("a resize without the lock wrote size %s", got.Create.Size)
	}
}
