// Package sysexec runs external tools (losetup, mount, mkfs...) with a
// timeout. Commands are exec'd directly from an argv, never through a shell,
// so names and paths need no quoting.
package sysexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// waitDelay bounds how long Run waits for the output pipes to close once the
// tool has exited or been killed: a tool that leaves a child holding them
// (mkfs spawning a helper, say) must not hang its caller.
const waitDelay = 2 * time.Second

// maxStderr caps how much stderr goes into an error message.
const maxStderr = 4096

// ExitError reports a tool that ran and exited non-zero.
type ExitError struct {
	Argv   []string
	Code   int
	Stderr string
	err    error
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", strings.Join(e.Argv, " "), e.Code)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Unwrap returns the underlying *exec.ExitError.
func (e *ExitError) Unwrap() error { return e.err }

// ExitCode returns the exit status carried by err, or -1 when err is not
// (and does not wrap) an *ExitError.
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

// Run runs argv and returns its stdout. It fails if the tool exits non-zero
// (an *ExitError holding the trimmed stderr), cannot be started, or does not
// finish within timeout or before ctx is done (an error wrapping ctx.Err(),
// so errors.Is(err, context.DeadlineExceeded) holds on a timeout). A timeout
// of zero or less means no timeout beyond ctx's own.
func Run(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("sysexec: empty command")
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A fixed locale keeps tool output parseable and messages greppable.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Its own process group lets a timeout kill the tool's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	err := cmd.Run()
	name := strings.Join(argv, " ")
	if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
		if timeout > 0 && errors.Is(ctxErr, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: timed out after %s: %w", name, timeout, ctxErr)
		}
		return nil, fmt.Errorf("%s: %w", name, ctxErr)
	}
	var xe *exec.ExitError
	switch {
	case errors.As(err, &xe):
		return nil, &ExitError{Argv: argv, Code: xe.ExitCode(), Stderr: trim(stderr.Bytes()), err: err}
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return stdout.Bytes(), nil
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxStderr {
		s = "..." + s[len(s)-maxStderr:]
	}
	return s
}
