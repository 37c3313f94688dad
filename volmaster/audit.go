package volmaster

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
)

// auditEntry is one mutating request: who, what, which object, result.
type auditEntry struct {
	Time    time.Time         `json:"time"`
	Who     string            `json:"who"`
	Role    string            `json:"role,omitempty"`
	Method  string            `json:"method"`
	Route   string            `json:"route"`
	Path    string            `json:"path"`
	Object  map[string]string `json:"object,omitempty"`
	Status  int               `json:"status"`
	Request string            `json:"request,omitempty"`
}

// auditLog logs every entry as one structured line and keeps the last ones
// for GET /v1/audit.
type auditLog struct {
	log  logrus.FieldLogger
	mu   sync.Mutex
	ring []auditEntry
	next int
	full bool
}

func newAuditLog(log logrus.FieldLogger, size int) *auditLog {
	if size <= 0 {
		size = 1000
	}
	return &auditLog{log: log, ring: make([]auditEntry, size)}
}

func (a *auditLog) record(e auditEntry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	a.log.WithFields(logrus.Fields{
		"audit": true, "who": e.Who, "role": e.Role, "method": e.Method, "route": e.Route,
		"path": e.Path, "status": e.Status, "request": e.Request,
	}).Info("audit")
	a.mu.Lock()
	a.ring[a.next] = e
	a.next = (a.next + 1) % len(a.ring)
	if a.next == 0 {
		a.full = true
	}
	a.mu.Unlock()
}

// entries returns the kept entries, oldest first.
func (a *auditLog) entries() []auditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.full {
		return append([]auditEntry{}, a.ring[:a.next]...)
	}
	return append(append([]auditEntry{}, a.ring[a.next:]...), a.ring[:a.next]...)
}

// audited runs a mutating request and records it.
func (s *Server) audited(rt Route, w http.ResponseWriter, r *http.Request, who string, next http.HandlerFunc) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	next(rec, r)
	e := auditEntry{Who: who, Method: r.Method, Route: rt.Path, Path: r.URL.Path, Status: rec.status, Object: mux.Vars(r)}
	if t, ok := caller(r); ok {
		e.Role = t.Role
	}
	if id, ok := r.Context().Value(requestIDKey).(string); ok {
		e.Request = id
	}
	s.audit.record(e)
}

func (s *Server) listAudit(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.audit.entries())
}
