package diag

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestInfoDescribesTheProcess(t *testing.T) {
	before := time.Now()
	p := Info("volmaster", time.Now().Add(-time.Minute))
	if p.Daemon != "volmaster" || p.GoVersion == "" || p.Kernel == "" || p.Arch == "" || p.OpenFDs < 3 || p.Goroutines < 1 || p.Uptime != "1m0s" {
		t.Errorf("Info = %+v", p)
	}
	if p.Time.Before(before) || p.Time.After(time.Now()) || p.Time.Location() != time.UTC {
		t.Errorf("Info time %v is not the UTC time of the call", p.Time)
	}
}

type syncBuf struct {
	ch chan string
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.ch <- string(p)
	return len(p), nil
}

func TestSIGUSR1DumpsGoroutines(t *testing.T) {
	out := &syncBuf{ch: make(chan string, 1)}
	log := logrus.New()
	log.SetOutput(out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	DumpOnSIGUSR1(ctx, log)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-out.ch:
		if !strings.Contains(s, "goroutine dump") || !strings.Contains(s, "TestSIGUSR1DumpsGoroutines") {
			t.Errorf("dump = %.300s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dump after SIGUSR1")
	}
}

func TestFollowDebug(t *testing.T) {
	log := logrus.New()
	for _, c := range []struct {
		floor logrus.Level
		debug bool
		want  logrus.Level
	}{
		{logrus.InfoLevel, true, logrus.DebugLevel},
		{logrus.InfoLevel, false, logrus.InfoLevel},
		{logrus.DebugLevel, false, logrus.DebugLevel}, // --debug stays
		{logrus.WarnLevel, false, logrus.InfoLevel},   // never below info
	} {
		log.SetLevel(logrus.ErrorLevel)
		if changed := FollowDebug(log, c.floor, c.debug); !changed || log.GetLevel() != c.want {
			t.Errorf("floor %s debug %v: level %s (changed %v), want %s", c.floor, c.debug, log.GetLevel(), changed, c.want)
		}
		if FollowDebug(log, c.floor, c.debug) {
			t.Errorf("floor %s debug %v: a second call changed the level again", c.floor, c.debug)
		}
	}
}
