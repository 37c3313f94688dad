package config

import "time"

// AuditEntry is one mutating request to volmaster, or one refused request:
// who, from where, what, which object, result.
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Who is the token ID, "anonymous" with auth off, or "unauthenticated".
	Who  string `json:"who"`
	Role string `json:"role,omitempty"`
	// Client is the address the request came from (the TCP peer).
	Client  string            `json:"client,omitempty"`
	Method  string            `json:"method"`
	Route   string            `json:"route"`
	Path    string            `json:"path"`
	Object  map[string]string `json:"object,omitempty"`
	Status  int               `json:"status"`
	Request string            `json:"request,omitempty"`
	// Volmaster is the ID of the volmaster that answered (GET /v1/cluster):
	// each volmaster keeps the entries of the requests it answered.
	Volmaster string `json:"volmaster,omitempty"`
}
