package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
)

// Frozen runs fn with the filesystem mounted at path frozen (fsfreeze), so
// that a snapshot taken meanwhile is consistent, and returns how long
// writers were held. The thaw runs even if ctx is cancelled: a filesystem
// left frozen blocks every writer. For the same reason the freeze is taken
// with a thaw guard (thawGuard), which thaws it if this process dies first.
func Frozen(ctx context.Context, timeout time.Duration, path string, fn func() error) (held time.Duration, err error) {
	stop, err := thawGuard(path)
	if err != nil {
		return 0, fmt.Errorf("freeze %s: %w", path, err)
	}
	defer stop()
	if _, err := sysexec.Run(ctx, timeout, "fsfreeze", "--freeze", path); err != nil {
		return 0, fmt.Errorf("freeze %s: %w", path, err)
	}
	start := time.Now()
	defer func() {
		_, uerr := sysexec.Run(context.WithoutCancel(ctx), timeout, "fsfreeze", "--unfreeze", path)
		held = time.Since(start)
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("thaw %s: %w", path, uerr))
		}
	}()
	return 0, fn()
}

// thawGuard starts a process that thaws the filesystem at path if this
// process dies (kill -9, a crash) while it is frozen: nothing else would
// ever thaw it. The guard waits for EOF on its stdin, a pipe only this
// process holds (close-on-exec, so no other child inherits it), and then
// thaws (an unfrozen filesystem only makes that fsfreeze fail). stop kills
// it without thawing.
func thawGuard(path string) (stop func(), err error) {
	cmd := exec.Command("sh", "-c", `read -r _; exec fsfreeze --unfreeze "$0"`, path)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Its own session, and no parent-death signal: it outlives this process
	// on purpose.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("thaw guard: %w", err)
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = in.Close()
	}, nil
}
