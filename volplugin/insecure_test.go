package volplugin

import (
	"errors"
	"testing"

	"github.com/volplugin/volplugin/config"
)

// Plain HTTP to a volmaster beyond loopback is refused unless --insecure:
// forged answers would choose what the host runs as root.
func TestCheckVolmasterURL(t *testing.T) {
	for _, c := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"http://127.0.0.1:9005", false, true},
		{"http://[::1]:9005", false, true},
		{"http://localhost:9005", false, true},
		{"https://10.0.0.5:9005", false, true},
		{"http://10.0.0.5:9005", false, false},
		{"http://volmaster.example:9005", false, false},
		{"http://10.0.0.5:9005", true, true},
		{"10.0.0.5:9005", true, false},
		{"", false, false},
		// A list: every URL is checked.
		{"http://127.0.0.1:9005,http://[::1]:9006", false, true},
		{"http://127.0.0.1:9005, https://10.0.0.6:9005", false, true},
		{"http://127.0.0.1:9005,http://10.0.0.6:9005", false, false},
		{"http://10.0.0.5:9005,http://10.0.0.6:9005", true, true},
		{"http://127.0.0.1:9005,10.0.0.6:9005", true, false},
		{" , ", false, false},
	} {
		err := checkVolmasterURL(c.url, c.insecure)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, config.ErrInvalid)) {
			t.Errorf("checkVolmasterURL(%q, insecure %v) = %v, want ok %v", c.url, c.insecure, err, c.ok)
		}
	}
}
