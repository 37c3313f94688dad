package docs

import (
	"regexp"
	"testing"

	"github.com/volplugin/volplugin/config"
)

var aliasRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\| `([^`]+)` \\|$")

// The original volplugin's option spellings are listed with what they
// stand for, exactly as config.OptionAliases has them.
func TestPolicyReferenceListsOptionAliases(t *testing.T) {
	doc := section(t, read(t, "policy-reference.md"), "## The original volplugin's option spellings")
	listed := map[string]bool{}
	for _, m := range aliasRow.FindAllStringSubmatch(doc, -1) {
		listed[m[1]+" -> "+m[2]] = true
	}
	code := map[string]bool{}
	for alias, ours := range config.OptionAliases() {
		code[alias+" -> "+ours] = true
	}
	compare(t, "config.OptionAliases()", code, "policy-reference.md ## The original volplugin's option spellings", listed)
}
