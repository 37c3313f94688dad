package client

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// A request that may have been done is repeated only if a repeat cannot do
// it twice; one that never reached a volmaster always may be.
func TestRepeatable(t *testing.T) {
	sent := fmt.Errorf("volmaster at x is unreachable: %w: %w", &net.OpError{Op: "read", Err: errors.New("reset")}, config.ErrUnavailable)
	notSent := fmt.Errorf("volmaster at x is unreachable: %w: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}, config.ErrUnavailable)
	for _, c := range []struct {
		method string
		kind   callKind
		err    error
		want   bool
	}{
		{http.MethodGet, byMethod, sent, true},
		{http.MethodPut, byMethod, sent, true},
		{http.MethodPost, keyedWrite, sent, true},
		{http.MethodDelete, keyedWrite, sent, true},
		{http.MethodPost, readOnly, sent, true},
		{http.MethodPost, byMethod, sent, false},
		{http.MethodPatch, byMethod, config.ErrUnavailable, false},
		{http.MethodPost, byMethod, notSent, true},
	} {
		if got := repeatable(c.method, c.kind, c.err); got != c.want {
			t.Errorf("repeatable(%s, %d, %v) = %v, want %v", c.method, c.kind, c.err, got, c.want)
		}
	}
}
