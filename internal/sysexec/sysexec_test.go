package sysexec

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunStdout(t *testing.T) {
	out, err := Run(context.Background(), time.Second, "echo", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\n" {
		t.Fatalf("stdout = %q", out)
	}
}

func TestRunTimeout(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), 100*time.Millisecond, "sleep", "10")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "sleep 10") {
		t.Errorf("error %q does not name the command", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestRunTimeoutKillsChildren(t *testing.T) {
	// The child keeps stdout open after sh is killed; the process group kill
	// and WaitDelay must still let Run return promptly.
	start := time.Now()
	_, err := Run(context.Background(), 100*time.Millisecond, "sh", "-c", "sleep 10; true")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestRunLeftoverChild(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), time.Minute, "sh", "-c", "sleep 4 & echo started")
	if err == nil {
		t.Fatal("want an error for a child holding the pipes")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, time.Minute, "sleep", "10")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}

func TestRunExitStatus(t *testing.T) {
	_, err := Run(context.Background(), time.Second, "false")
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	if ExitCode(err) != 1 {
		t.Errorf("ExitCode = %d", ExitCode(err))
	}
}

func TestRunStderr(t *testing.T) {
	_, err := Run(context.Background(), time.Second, "sh", "-c", "echo x >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *ExitError", err)
	}
	if ee.Code != 3 || ee.Stderr != "x" || !strings.Contains(err.Error(), "x") {
		t.Errorf("got code %d stderr %q msg %q", ee.Code, ee.Stderr, err)
	}
}

func TestRunMissingTool(t *testing.T) {
	_, err := Run(context.Background(), time.Second, "/nonexistent/tool")
	if err == nil || ExitCode(err) != -1 {
		t.Fatalf("err = %v", err)
	}
	if _, err := Run(context.Background(), time.Second); err == nil {
		t.Fatal("empty argv: want error")
	}
}
