package csi

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volplugin/volplugin/config"
)

func TestVolumeNameIsDeterministic(t *testing.T) {
	if got := VolumeName("pvc-12ab"); got != "pvc-12ab" {
		t.Errorf("a valid name maps to %q, want itself", got)
	}
	long := "pvc-" + strings.Repeat("a", 80)
	for _, name := range []string{long, "a/b", "-lead", "sp ace", ""} {
		got := VolumeName(name)
		if got != VolumeName(name) {
			t.Errorf("%q maps to %q, then to %q", name, got, VolumeName(name))
		}
		if !strings.HasPrefix(got, "csi-") || config.ValidateName("volume", got) != nil {
			t.Errorf("%q maps to %q, want a valid csi-<hash> name", name, got)
		}
	}
	if VolumeName("a/b") == VolumeName("a/c") {
		t.Error("two names map to one volume")
	}
}

func TestVolumeOptions(t *testing.T) {
	params := map[string]string{ParamPolicy: "p", "filesystem": "xfs", "csi.storage.k8s.io/pvc/name": "claim"}
	policy, opts, err := volumeOptions(params, &csipb.CapacityRange{RequiredBytes: 1 << 20})
	if err != nil || policy != "p" || opts[config.OptSize] != "1048576" || opts["filesystem"] != "xfs" || len(opts) != 2 {
		t.Errorf("volumeOptions = %q %v %v", policy, opts, err)
	}
	for what, tc := range map[string]struct {
		params map[string]string
		rng    *csipb.CapacityRange
	}{
		"no policy":            {map[string]string{"filesystem": "xfs"}, nil},
		"bad policy":           {map[string]string{ParamPolicy: "a/b"}, nil},
		"size beside capacity": {map[string]string{ParamPolicy: "p", "size": "1GB"}, &csipb.CapacityRange{RequiredBytes: 1}},
		"required over limit":  {map[string]string{ParamPolicy: "p"}, &csipb.CapacityRange{RequiredBytes: 2, LimitBytes: 1}},
		"negative capacity":    {map[string]string{ParamPolicy: "p"}, &csipb.CapacityRange{RequiredBytes: -1}},
	} {
		if _, _, err := volumeOptions(tc.params, tc.rng); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
}

func TestStatusError(t *testing.T) {
	for err, want := range map[error]codes.Code{
		config.ErrInvalid:     codes.InvalidArgument,
		config.ErrNotFound:    codes.NotFound,
		config.ErrExists:      codes.AlreadyExists,
		config.ErrBusy:        codes.Aborted,
		config.ErrInUse:       codes.FailedPrecondition,
		config.ErrProtected:   codes.FailedPrecondition,
		config.ErrUnavailable: codes.Unavailable,
		errBadToken:           codes.Aborted,
		errNotStaged:          codes.FailedPrecondition,
		errOutOfRange:         codes.OutOfRange,
		errors.New("x"):       codes.Internal,
	} {
		got := statusError(fmt.Errorf("wrapped: %w", err))
		if st, _ := status.FromError(got); st.Code() != want || !strings.Contains(st.Message(), "wrapped") {
			t.Errorf("%v -> %v, want %s with the message", err, got, want)
		}
	}
	if _, err := volumeRef("not-ours"); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("an ID not POLICY/NAME: %v, want ErrNotFound", err)
	}
	if _, err := volumeRef(""); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("an empty ID: %v, want ErrInvalid", err)
	}
}

func TestListenReplacesOnlyAStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ln, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); !errors.Is(err, config.ErrInUse) {
		t.Errorf("a second Listen while the first serves: %v, want ErrInUse", err)
	}
	// A listener closed without removing its file, as after kill -9.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	for _, bad := range []string{"tcp://127.0.0.1:1", "relative.sock", "unix://"} {
		if _, err := Listen(bad); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Listen(%q): %v, want ErrInvalid", bad, err)
		}
	}
}
