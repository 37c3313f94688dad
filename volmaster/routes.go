package volmaster

import (
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

// Route is one API route; Routes lists them all (the docs are checked
// against this table). Access says who may call it when auth is on; the one
// authorization middleware decides from it, no handler checks roles.
type Route struct {
	Method string
	Path   string
	Access Access
	handle func(*Server, http.ResponseWriter, *http.Request)
}

// Routes returns the API's routes.
func Routes() []Route {
	return []Route{
		{"GET", "/healthz", Public, (*Server).healthz},
		{"GET", "/metrics", Public, (*Server).serveMetrics},
		{"GET", "/info", Read, (*Server).info},
		{"GET", "/v1/policies", Read, (*Server).listPolicies},
		{"GET", "/v1/policies/{policy}", Read, (*Server).getPolicy},
		{"PUT", "/v1/policies/{policy}", Admin, (*Server).putPolicy},
		{"DELETE", "/v1/policies/{policy}", Admin, (*Server).deletePolicy},
		{"GET", "/v1/policies/{policy}/revisions", Read, (*Server).listRevisions},
		{"GET", "/v1/policies/{policy}/revisions/{rev}", Read, (*Server).getRevision},
		{"GET", "/v1/volumes", Read, (*Server).listVolumes},
		{"POST", "/v1/volumes", VolumeWrite, (*Server).createVolume},
		{"GET", "/v1/volumes/{policy}", Read, (*Server).listVolumes},
		{"GET", "/v1/volumes/{policy}/{name}", Read, (*Server).getVolume},
		{"DELETE", "/v1/volumes/{policy}/{name}", VolumeWrite, (*Server).removeVolume},
		{"GET", "/v1/volumes/{policy}/{name}/snapshots", Read, (*Server).listSnapshots},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots", VolumeWrite, (*Server).takeSnapshot},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots/{snap}/copy", VolumeWrite, (*Server).copySnapshot},
		{"GET", "/v1/volumes/{policy}/{name}/runtime", Read, (*Server).getRuntime},
		{"PUT", "/v1/volumes/{policy}/{name}/runtime", VolumeWrite, (*Server).putRuntime},
		{"GET", "/v1/global", Read, (*Server).getGlobal},
		{"PUT", "/v1/global", Admin, (*Server).putGlobal},
		{"GET", "/v1/uses", Read, (*Server).listUses},
		{"GET", "/v1/uses/{policy}/{name}", Read, (*Server).getUse},
		{"DELETE", "/v1/uses/{policy}/{name}", Admin, (*Server).deleteUse},
		{"PUT", "/v1/uses/{policy}/{name}", Host, (*Server).acquireUse},
		{"DELETE", "/v1/uses/{policy}/{name}/mounts/{id}", Host, (*Server).releaseUse},
		{"GET", "/v1/supervisor", Read, (*Server).listSupervisors},
		{"GET", "/v1/reclaimable", Read, (*Server).listReclaimable},
		{"POST", "/v1/leases", Host, (*Server).grantLease},
		{"PUT", "/v1/leases/{id}", Host, (*Server).keepAlive},
		{"DELETE", "/v1/leases/{id}", Host, (*Server).revokeLease},
		{"GET", "/v1/tokens", Admin, (*Server).listTokens},
		{"POST", "/v1/tokens", Admin, (*Server).createToken},
		{"DELETE", "/v1/tokens/{id}", Admin, (*Server).revokeToken},
		{"GET", "/v1/audit", Admin, (*Server).listAudit},
	}
}

func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	for _, rt := range Routes() {
		handle := rt.handle
		r.HandleFunc(rt.Path, s.metrics.instrument(rt.Path, s.authorize(rt, func(w http.ResponseWriter, req *http.Request) {
			handle(s, w, req)
		}))).Methods(rt.Method)
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
