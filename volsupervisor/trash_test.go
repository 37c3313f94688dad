package volsupervisor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
)

// Reclamation moves a volume to the trash, never a protected one; the
// leader purges the entry, image and record, once its retention is over.
func TestReclaimToTrashThenPurge(t *testing.T) {
	e := setup(t, 5)
	ctx := context.Background()
	const fields = `"reclaim":{"unused-for":"1m","enabled":true},"trash":{"retention":"1h"}`
	recl := e.volumeOf(t, "recl", fields)
	prot := e.volumeOf(t, "prot", fields+`,"protect":true`)
	clock := newClock(time.Now().Add(24 * time.Hour))
	s := e.supervisorAt(t, "s1", clock)
	waitFor(t, "p/recl reclaimed", 20*time.Second, func() bool { return s.Status().Removed == 1 })
	entries, err := e.st.ListTrash(ctx, config.VolumeRef{})
	if err != nil || len(entries) != 1 || entries[0].Ref() != recl || entries[0].Expires.Sub(entries[0].RemovedAt) != time.Hour {
		t.Fatalf("trash = %+v, %v; want p/recl expiring an hour after its removal", entries, err)
	}
	clock.waitReads(t, 150)
	if !e.exists(t, prot) || e.exists(t, recl) || s.Status().Removed != 1 || s.Status().Purged != 0 {
		t.Fatalf("after the reclaim: prot %v recl %v, status %+v", e.exists(t, prot), e.exists(t, recl), s.Status())
	}
	clock.Add(2 * time.Hour)
	waitFor(t, "the expired entry purged", 20*time.Second, func() bool { return s.Status().Purged == 1 })
	if entries, _ := e.st.ListTrash(ctx, config.VolumeRef{}); len(entries) != 0 {
		t.Errorf("trash after the purge: %+v", entries)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "trash", "p")); !os.IsNotExist(err) {
		t.Errorf("local trash left after the purge: %v", err)
	}
	if !e.exists(t, prot) {
		t.Error("protected volume removed")
	}
}
