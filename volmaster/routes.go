package volmaster

import (
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

// Route is one API route; Routes lists them all (the docs are checked
// against this table).
type Route struct {
	Method string
	Path   string
	handle func(*Server, http.ResponseWriter, *http.Request)
}

// Routes returns the API's routes.
func Routes() []Route {
	return []Route{
		{"GET", "/healthz", (*Server).healthz},
		{"GET", "/metrics", (*Server).serveMetrics},
		{"GET", "/info", (*Server).info},
		{"GET", "/v1/policies", (*Server).listPolicies},
		{"GET", "/v1/policies/{policy}", (*Server).getPolicy},
		{"PUT", "/v1/policies/{policy}", (*Server).putPolicy},
		{"DELETE", "/v1/policies/{policy}", (*Server).deletePolicy},
		{"GET", "/v1/policies/{policy}/revisions", (*Server).listRevisions},
		{"GET", "/v1/policies/{policy}/revisions/{rev}", (*Server).getRevision},
		{"GET", "/v1/volumes", (*Server).listVolumes},
		{"POST", "/v1/volumes", (*Server).createVolume},
		{"GET", "/v1/volumes/{policy}", (*Server).listVolumes},
		{"GET", "/v1/volumes/{policy}/{name}", (*Server).getVolume},
		{"DELETE", "/v1/volumes/{policy}/{name}", (*Server).removeVolume},
		{"GET", "/v1/volumes/{policy}/{name}/snapshots", (*Server).listSnapshots},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots", (*Server).takeSnapshot},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots/{snap}/copy", (*Server).copySnapshot},
		{"GET", "/v1/volumes/{policy}/{name}/runtime", (*Server).getRuntime},
		{"PUT", "/v1/volumes/{policy}/{name}/runtime", (*Server).putRuntime},
		{"GET", "/v1/global", (*Server).getGlobal},
		{"PUT", "/v1/global", (*Server).putGlobal},
		{"GET", "/v1/uses", (*Server).listUses},
		{"GET", "/v1/uses/{policy}/{name}", (*Server).getUse},
		{"DELETE", "/v1/uses/{policy}/{name}", (*Server).deleteUse},
		{"PUT", "/v1/uses/{policy}/{name}", (*Server).acquireUse},
		{"DELETE", "/v1/uses/{policy}/{name}/mounts/{id}", (*Server).releaseUse},
		{"GET", "/v1/supervisor", (*Server).listSupervisors},
		{"GET", "/v1/reclaimable", (*Server).listReclaimable},
		{"POST", "/v1/leases", (*Server).grantLease},
		{"PUT", "/v1/leases/{id}", (*Server).keepAlive},
		{"DELETE", "/v1/leases/{id}", (*Server).revokeLease},
	}
}

func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	for _, rt := range Routes() {
		handle := rt.handle
		r.HandleFunc(rt.Path, s.metrics.instrument(rt.Path, func(w http.ResponseWriter, req *http.Request) {
			handle(s, w, req)
		})).Methods(rt.Method)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no route %s %s", req.Method, req.URL.Path), Code: config.CodeNotFound})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("method %s not allowed on %s", req.Method, req.URL.Path), Code: config.CodeInvalid})
	})
	return r
}

// policyVar returns the validated {policy} path variable.
func policyVar(r *http.Request) (string, error) {
	p := mux.Vars(r)["policy"]
	return p, config.ValidateName("policy", p)
}

// refVar returns the validated {policy}/{name} path variables.
func refVar(r *http.Request) (config.VolumeRef, error) {
	v := mux.Vars(r)
	ref := config.VolumeRef{Policy: v["policy"], Name: v["name"]}
	return ref, ref.Validate()
}
