package volmaster

import (
	"context"
	"net/http"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/diag"
)

// Health is the body of GET /healthz. A 503 also carries the error body
// every other route answers with (error, code), so a client reading errors
// the usual way gets etcd's error, not just the status.
type Health struct {
	Status string `json:"status"`
	Etcd   string `json:"etcd"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.GetGlobal(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, Health{Status: "unavailable", Etcd: err.Error(),
			Error: "etcd: " + err.Error(), Code: config.ErrorCode(config.ErrUnavailable)})
		return
	}
	writeJSON(w, http.StatusOK, Health{Status: "ok", Etcd: "ok"})
}

func (s *Server) getGlobal(w http.ResponseWriter, r *http.Request) {
	g, err := s.store.GetGlobal(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) putGlobal(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	g, err := config.DecodeGlobal(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.store.PutGlobal(r.Context(), g); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) listUses(w http.ResponseWriter, r *http.Request) {
	uses, err := s.store.ListUses(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, visibleOnly(r, uses, func(u config.Use) string { return u.Volume.Policy }))
}

func (s *Server) getUse(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	u, err := s.store.GetUse(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (s *Server) deleteUse(w http.ResponseWriter, r *http.Request) {
	ref, err := refVar(r)
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := s.locks.ForceRelease(r.Context(), ref, s.now())
	if err != nil {
		writeError(w, err)
		return
	}
	l := s.log.WithField("volume", ref.String()).WithField("last-mounted-on", out.Usage.Host)
	if out.Lock != nil {
		l = l.WithField("lock-host", out.Lock.Hostname)
	}
	l.Warn("mount lock force-removed, unmount recorded by an operator")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler().ServeHTTP(w, r)
}

// Info is the body of GET /info.
type Info struct {
	Process  diag.Process  `json:"process"`
	Prefix   string        `json:"prefix"`
	Volumes  int           `json:"volumes"`
	Policies int           `json:"policies"`
	Global   config.Global `json:"global"`
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	vols, pols := s.cache.Counts()
	writeJSON(w, http.StatusOK, Info{
		Process: diag.Info("volmaster", s.started), Prefix: s.store.Keys().Prefix,
		Volumes: vols, Policies: pols, Global: *s.global.Load(),
	})
}
