package volplugin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning means another volplugin already serves the socket or holds the
// state directory. Two of them on one host would each adopt, undo or release
// the other's mounts from one state file, or silently steal Docker's socket.
var ErrRunning = errors.New("another volplugin is running")

// checkSocketFree refuses a socket something still answers on; a socket
// file nobody listens on (a crash left it) is stale and may be replaced.
func checkSocketFree(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is served by a running process (stop it, or use another --plugin-name or --socket-dir): %w", path, ErrRunning)
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("check socket %s: %w", path, err)
}

// instanceLock holds an exclusive flock on <state-dir>/<plugin>.lock for the
// life of the process; the kernel drops it when the process dies, kill -9
// included, so a stale lock never needs clearing by hand.
type instanceLock struct{ f *os.File }

func lockInstance(dir, plugin string) (*instanceLock, error) {
	path := filepath.Join(dir, plugin+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder[:n]))
			return nil, fmt.Errorf("state directory %s is in use by volplugin pid %s (one volplugin per --state-dir and --plugin-name): %w", dir, pid, ErrRunning)
		}
		return nil, fmt.Errorf("state lock %s: %w", path, err)
	}
	// The PID is only for the message above; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &instanceLock{f: f}, nil
}

func (l *instanceLock) release() { l.f.Close() }
