// Package diag reports what every daemon says about itself in /info
// (version, Go and kernel versions, architecture, open fds, goroutines,
// uptime) and dumps goroutine stacks to the log on SIGUSR1.
package diag

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Version and Commit are set at build time:
// -ldflags "-X github.com/volplugin/volplugin/internal/diag.Version=... -X ...Commit=...".
var (
	Version = "dev"
	Commit  = "unknown"
)

// Process is the self-description every daemon includes in /info.
type Process struct {
	Daemon     string `json:"daemon"`
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	GoVersion  string `json:"go-version"`
	Kernel     string `json:"kernel"`
	Arch       string `json:"arch"`
	PID        int    `json:"pid"`
	OpenFDs    int    `json:"open-fds"`
	Goroutines int    `json:"goroutines"`
	Uptime     string `json:"uptime"`
	// Time is the daemon's clock when it answered: volcli doctor compares
	// it with the caller's.
	Time time.Time `json:"time"`
}

// Info describes this process; started is when the daemon started.
func Info(daemon string, started time.Time) Process {
	p := Process{
		Daemon: daemon, Version: Version, Commit: Commit, GoVersion: runtime.Version(),
		Arch: runtime.GOARCH, PID: os.Getpid(), Goroutines: runtime.NumGoroutine(),
		Uptime: time.Since(started).Round(time.Second).String(), OpenFDs: -1, Time: time.Now().UTC(),
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		p.Kernel = strings.TrimRight(string(u.Release[:]), "\x00")
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.OpenFDs = len(ents)
	}
	return p
}

// DumpOnSIGUSR1 writes every goroutine's stack to log each time the process
// gets SIGUSR1, until ctx ends.
func DumpOnSIGUSR1(ctx context.Context, log logrus.FieldLogger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				var b strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
				log.WithField("goroutines", runtime.NumGoroutine()).Warn("SIGUSR1 goroutine dump:\n" + b.String())
			}
		}
	}()
}

// FollowDebug sets log's level for the global configuration's Debug: debug
// while it is set, otherwise floor (the level the daemon started with, which
// --debug may have raised), never below info. It reports whether the level
// changed.
func FollowDebug(log *logrus.Logger, floor logrus.Level, debug bool) bool {
	level := max(logrus.InfoLevel, floor)
	if debug {
		level = logrus.DebugLevel
	}
	if log.GetLevel() == level {
		return false
	}
	log.SetLevel(level)
	return true
}
