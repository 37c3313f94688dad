package volplugin

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A global upload reaches a running volplugin without a restart: Debug sets
// its log level, Timeout its operation timeout; a --debug start stays debug.
func TestWatchGlobalAppliesDebugAndTimeout(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	newDriver := func(level logrus.Level) (*Driver, *logrus.Logger) {
		log := logrus.New()
		log.SetOutput(io.Discard)
		log.SetLevel(level)
		d, err := New(Config{API: c.api, Host: "h1", Log: log, Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		go d.watchGlobal(ctx, 20*time.Millisecond)
		return d, log
	}
	d, log := newDriver(logrus.InfoLevel)
	dbg, dbgLog := newDriver(logrus.DebugLevel)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	put := func(doc string) {
		t.Helper()
		if _, err := c.api.PutGlobal(ctx, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"TTL": 2, "Timeout": 7, "Debug": true}`)
	waitFor("debug and a 7 min timeout", func() bool {
		return log.GetLevel() == logrus.DebugLevel && d.opTimeout() == 7*time.Minute
	})
	put(`{"TTL": 2, "Timeout": 3}`)
	waitFor("info and a 3 min timeout", func() bool {
		return log.GetLevel() == logrus.InfoLevel && d.opTimeout() == 3*time.Minute
	})
	// The --debug driver took the same rounds (its timeout moved) and kept
	// its level.
	waitFor("the --debug driver's timeout", func() bool { return dbg.opTimeout() == 3*time.Minute })
	if dbgLog.GetLevel() != logrus.DebugLevel {
		t.Errorf("a driver started with --debug went to %s after Debug false", dbgLog.GetLevel())
	}
}
