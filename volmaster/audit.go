package volmaster

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/volplugin/volplugin/config"
)

// ring keeps the last entries.
type ring struct {
	entries []config.AuditEntry
	next    int
	full    bool
}

func (r *ring) add(e config.AuditEntry) {
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the kept entries, oldest first.
func (r *ring) list() []config.AuditEntry {
	if !r.full {
		return append([]config.AuditEntry{}, r.entries[:r.next]...)
	}
	return append(append([]config.AuditEntry{}, r.entries[r.next:]...), r.entries[:r.next]...)
}

// auditLog logs every mutating request as one structured line (and to the
// audit file, if any) and keeps the last ones for GET /v1/audit. Requests
// refused before they ran (401, 403) have their own ring, a counter and a
// log rate limit, so that anyone who can reach the port cannot flush the
// real entries out or flood the log.
type auditLog struct {
	// volmaster stamps every entry with the ID of this volmaster.
	volmaster string
	log       logrus.FieldLogger
	file      *auditFile
	refusal   *rate.Limiter

	mu       sync.Mutex
	done     ring
	refused  ring
	nRefused uint64
	dropped  uint64 // refusals not logged (rate limit)
}

func newAuditLog(log logrus.FieldLogger, size int, file *auditFile) *auditLog {
	if size <= 0 {
		size = 1000
	}
	return &auditLog{log: log, file: file, refusal: rate.NewLimiter(10, 20),
		done: ring{entries: make([]config.AuditEntry, size)}, refused: ring{entries: make([]config.AuditEntry, size)}}
}

func fields(e config.AuditEntry) logrus.Fields {
	return logrus.Fields{"audit": true, "who": e.Who, "role": e.Role, "client": e.Client, "method": e.Method,
		"route": e.Route, "path": e.Path, "status": e.Status, "request": e.Request}
}

func (a *auditLog) record(e config.AuditEntry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Volmaster = a.volmaster
	a.log.WithFields(fields(e)).Info("audit")
	a.file.write(a.log, e)
	a.mu.Lock()
	a.done.add(e)
	a.mu.Unlock()
}

// refuse records a request refused before it ran.
func (a *auditLog) refuse(e config.AuditEntry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	logged := a.refusal.Allow()
	a.mu.Lock()
	a.refused.add(e)
	a.nRefused++
	if !logged {
		a.dropped++
	}
	a.mu.Unlock()
	if logged {
		a.log.WithFields(fields(e)).Warn("audit: refused")
		a.file.write(a.log, e)
	}
}

func (a *auditLog) entries(refused bool) []config.AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if refused {
		return a.refused.list()
	}
	return a.done.list()
}

// refusals returns how many requests were refused, and how many of those the
// log rate limit left out of the log.
func (a *auditLog) refusals() (refused, notLogged uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nRefused, a.dropped
}

// clientAddr is the request's TCP peer without its port.
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func newEntry(r *http.Request, rt Route, who, role string, status int) config.AuditEntry {
	e := config.AuditEntry{Who: who, Role: role, Client: clientAddr(r), Method: r.Method, Route: rt.Path, Path: r.URL.Path, Status: status}
	if id, ok := r.Context().Value(requestIDKey).(string); ok {
		e.Request = id
	}
	return e
}

// audited runs a mutating request and records it.
func (s *Server) audited(rt Route, w http.ResponseWriter, r *http.Request, who string, next http.HandlerFunc) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	next(rec, r)
	role := ""
	if t, ok := caller(r); ok {
		role = t.Role
	}
	e := newEntry(r, rt, who, role, rec.status)
	e.Object = mux.Vars(r)
	s.audit.record(e)
}

// listAudit answers GET /v1/audit: the kept entries, oldest first; with
// refused=true the requests refused before they ran.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	refused := false
	if v := r.URL.Query().Get("refused"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errInvalidf("refused=%q must be true or false", v)
		}
		refused = b
	}
	writeJSON(w, http.StatusOK, s.audit.entries(refused))
	return nil
}

// auditFile appends each entry as a JSON line to a file. When the file is
// moved away (logrotate) it is opened anew at its path at the next entry,
// so rotation needs no signal.
type auditFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openAuditFile(path string) (*auditFile, error) {
	if path == "" {
		return nil, nil
	}
	a := &auditFile{path: path}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditFile) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("audit log file: %w", err)
	}
	if a.f != nil {
		a.f.Close()
	}
	a.f = f
	return nil
}

// rotated tells whether the path no longer names the open file.
func (a *auditFile) rotated() bool {
	cur, err := a.f.Stat()
	if err != nil {
		return true
	}
	now, err := os.Stat(a.path)
	return err != nil || !os.SameFile(cur, now)
}

func (a *auditFile) write(log logrus.FieldLogger, e config.AuditEntry) {
	if a == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rotated() {
		if err := a.open(); err != nil {
			log.WithError(err).Error("audit log file")
			return
		}
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		log.WithError(err).Error("audit log file")
	}
}

func (a *auditFile) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
