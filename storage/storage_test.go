package storage

import (
	"errors"
	"fmt"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// Each backend sentinel is a kind of config's, so its HTTP status, its wire
// code and every daemon's checks follow from config alone; config's
// sentinels are not storage's in turn.
func TestSentinelsAreConfigKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		kind error
		code string
	}{
		{ErrNotFound, config.ErrNotFound, config.CodeNotFound},
		{ErrExists, config.ErrExists, config.CodeExists},
		{ErrInUse, config.ErrInUse, config.CodeInUse},
		{ErrWrongFilesystem, config.ErrInvalid, config.CodeInvalid},
		{ErrUnsupported, config.ErrInvalid, config.CodeInvalid},
		{ErrDamaged, ErrWrongFilesystem, config.CodeInvalid},
		{ErrNotBlank, ErrWrongFilesystem, config.CodeInvalid},
	} {
		wrapped := fmt.Errorf("image p/v: %w", c.err)
		if !errors.Is(wrapped, c.kind) {
			t.Errorf("%v is not a kind of %v", c.err, c.kind)
		}
		if got := config.ErrorCode(wrapped); got != c.code {
			t.Errorf("code of %v = %q, want %q", c.err, got, c.code)
		}
	}
	if errors.Is(config.ErrInUse, ErrInUse) || errors.Is(config.ErrBusy, ErrInUse) {
		t.Error("config's in-use errors match storage.ErrInUse: a lock held in etcd would pass for a backend's")
	}
	if config.ErrorCode(ErrNotGrown) != config.CodeInternal {
		t.Errorf("ErrNotGrown has code %q, want internal", config.ErrorCode(ErrNotGrown))
	}
}
