package volcli

import (
	"testing"

	"github.com/volplugin/volplugin/config"
)

// volume resize grows, says so, and refuses bad sizes, shrinking and missing
// volumes with the usual exit codes, changing nothing.
func TestVolumeResize(t *testing.T) {
	h := newHarness(t)
	h.ok(`{"backend":"local","create":{"size":"10MB"}}`, "policy", "upload", "p")
	h.ok("", "volume", "create", "p/v")
	if out := h.ok("", "volume", "resize", "p/v", "20MB"); out != "volume p/v resized to 20MB\n" {
		t.Errorf("resize: %q", out)
	}
	before := h.dump()
	h.fails(2, `size "big" is not a size`, "", "volume", "resize", "p/v", "big")
	h.fails(2, "volumes only grow", "", "volume", "resize", "p/v", "12MB")
	h.fails(2, "", "", "volume", "resize", "p/v")
	h.fails(3, "volume p/nope not found", "", "volume", "resize", "p/nope", "30MB")
	h.sameDump(before, "refused resizes")
	// Mounted: it grows all the same (its host grows the filesystem).
	h.putUse(config.Use{Volume: config.VolumeRef{Policy: "p", Name: "v"}, Hostname: "h1", MountIDs: []string{"m"}})
	if out := h.ok("", "volume", "resize", "p/v", "30MB"); out != "volume p/v resized to 30MB\n" {
		t.Errorf("resize of a mounted volume: %q", out)
	}
}
