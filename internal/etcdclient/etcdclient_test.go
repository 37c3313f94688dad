package etcdclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/internal/testpki"
)

// failFast bounds how long a refused TLS handshake may take to surface:
// far below DefaultTimeout, so the error cannot come from a timeout.
const failFast = 5 * time.Second

func dial(t *testing.T, c Config) (time.Duration, error) {
	t.Helper()
	c.Logger = zap.NewNop()
	start := time.Now()
	cli, err := Dial(t.Context(), c)
	if err == nil {
		defer cli.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "/k", "v"); err != nil {
			t.Fatalf("put through the dialled client: %v", err)
		}
	}
	return time.Since(start), err
}

func TestDialTLS(t *testing.T) {
	p := testpki.New(t, t.TempDir())
	_, tlsEps := etcdtest.StartWith(t, etcdtest.Options{TLS: &p})
	_, mtlsEps := etcdtest.StartWith(t, etcdtest.Options{TLS: &p, ClientCertAuth: true})
	for _, tc := range []struct {
		name string
		c    Config
		want string // "" for success
	}{
		{"CA", Config{Endpoints: tlsEps, CA: p.CA}, ""},
		{"no CA", Config{Endpoints: tlsEps}, "--etcd-ca"},
		{"wrong CA", Config{Endpoints: tlsEps, CA: p.OtherCA}, "certificate signed by unknown authority"},
		{"mutual, CA and client certificate", Config{Endpoints: mtlsEps, CA: p.CA, Cert: p.ClientCert, Key: p.ClientKey}, ""},
		{"mutual, no client certificate", Config{Endpoints: mtlsEps, CA: p.CA}, "--etcd-cert"},
		{"mutual, certificate of another CA", Config{Endpoints: mtlsEps, CA: p.CA, Cert: p.OtherClientCert, Key: p.OtherClientKey}, "refused"},
		{"mutual, no CA", Config{Endpoints: mtlsEps, Cert: p.ClientCert, Key: p.ClientKey}, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, err := dial(t, tc.c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			t.Logf("%v (after %s)", err, took.Round(time.Millisecond))
			if !errors.Is(err, config.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial = %v, want ErrUnavailable mentioning %q", err, tc.want)
			}
			if took > failFast {
				t.Errorf("Dial took %s to fail, want < %s", took, failFast)
			}
		})
	}
}

func TestDialRefusesFlagsThatWouldBeIgnored(t *testing.T) {
	p := testpki.New(t, t.TempDir())
	for _, c := range []Config{
		{Endpoints: []string{"http://127.0.0.1:2379"}, CA: p.CA},
		{Endpoints: []string{"http://127.0.0.1:2379"}, Cert: p.ClientCert, Key: p.ClientKey},
		{Endpoints: []string{"https://127.0.0.1:2379", "http://127.0.0.1:2380"}, CA: p.CA},
		{Endpoints: []string{"127.0.0.1:2379"}},
		{},
	} {
		if _, err := dial(t, c); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Dial(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}

// Plain http etcd still works, and an etcd that is not there fails within
// the timeout.
func TestDialPlainAndUnreachable(t *testing.T) {
	_, eps := etcdtest.Start(t)
	if _, err := dial(t, Config{Endpoints: eps}); err != nil {
		t.Fatalf("plain etcd: %v", err)
	}
	took, err := dial(t, Config{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: time.Second})
	if !errors.Is(err, config.ErrUnavailable) {
		t.Fatalf("unreachable etcd: %v", err)
	}
	if took > failFast {
		t.Errorf("unreachable etcd took %s with a 1s timeout", took)
	}
}
