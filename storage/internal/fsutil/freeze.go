package fsutil

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/volplugin/volplugin/internal/sysexec"
)

// Frozen runs fn with the filesystem mounted at path frozen (fsfreeze), so
// that a snapshot taken meanwhile is consistent, and returns how long
// writers were held. The thaw runs even if ctx is cancelled: a filesystem
// left frozen blocks every writer.
func Frozen(ctx context.Context, timeout time.Duration, path string, fn func() error) (held time.Duration, err error) {
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
