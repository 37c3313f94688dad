package docs

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/volplugin/volplugin/csi"
)

// TestKubernetesPageListsEveryVolcsiFlag compares cmd/volcsi's flags with
// the flag table in kubernetes.md.
func TestKubernetesPageListsEveryVolcsiFlag(t *testing.T) {
	code := map[string]bool{}
	for _, f := range daemonFlags(t, filepath.Join(root, "cmd", "volcsi", "main.go")) {
		code[f] = true
	}
	if len(code) == 0 {
		t.Fatal("no flags found in cmd/volcsi/main.go")
	}
	documented := map[string]bool{}
	doc := section(t, read(t, "kubernetes.md"), "## volcsi flags")
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|").FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = true
	}
	compare(t, "cmd/volcsi", code, "kubernetes.md ## volcsi flags", documented)
}

// TestKubernetesPageNamesTheTopologyKeys: the Topology section names the
// keys volcsi reports, which become node labels.
func TestKubernetesPageNamesTheTopologyKeys(t *testing.T) {
	doc := section(t, read(t, "kubernetes.md"), "## Topology")
	for _, k := range []string{csi.TopologyHost, csi.TopologyLocalStore} {
		if !strings.Contains(doc, "`"+k+": ") {
			t.Errorf("kubernetes.md ## Topology does not name the key %s", k)
		}
	}
}
