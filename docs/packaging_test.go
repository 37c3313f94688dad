package docs

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPackagedEnvFilesUseRealFlags keeps the sample env files honest: every
// --flag they set or suggest (in comments too) is one the daemon has, and
// none says there is no authentication or TLS.
func TestPackagedEnvFilesUseRealFlags(t *testing.T) {
	daemons := []string{"volmaster", "volplugin", "volsupervisor"}
	flags := map[string]map[string]bool{}
	for _, d := range daemons {
		flags[d] = map[string]bool{"help": true}
		for _, f := range daemonFlags(t, filepath.Join(root, "cmd", d, "main.go")) {
			flags[d][f] = true
		}
	}
	for _, d := range daemons {
		env := read(t, filepath.Join(root, "packaging", "etc", "volplugin", d+".env"))
		// "volmaster's --data-dir" names another daemon's flag.
		for _, m := range regexp.MustCompile(`(?:(\w+)'s )?(?:^|\B)--([a-z0-9-]+)`).FindAllStringSubmatch(env, -1) {
			of := d
			if flags[m[1]] != nil {
				of = m[1]
			}
			if !flags[of][m[2]] {
				t.Errorf("packaging/etc/volplugin/%s.env names --%s, which %s does not have", d, m[2], of)
			}
		}
		if strings.Contains(strings.ToLower(env), "no authentication") {
			t.Errorf("packaging/etc/volplugin/%s.env says there is no authentication", d)
		}
	}
}
