// Package bearer guards an HTTP handler with a fixed bearer token, for the
// metrics endpoints of the daemons that have no token store of their own.
package bearer

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Require passes only requests with "Authorization: Bearer token"; others
// get 401. An empty token passes everything.
func Require(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// FromFile reads a token from the first line of path ("" for an empty
// path).
func FromFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if tok := strings.TrimSpace(line); tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("token file %s is empty", path)
}
