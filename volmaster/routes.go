package volmaster

import (
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/volplugin/volplugin/config"
)

// Route is one API route; Routes lists them all (the docs are checked
// against this table). Access says who may call it when auth is on; the one
// authorization middleware decides from it, no handler checks roles. A Host
// route also names its owner function: how the middleware finds the hosts a
// request touches, so that a host token acts only for its own host.
type Route struct {
	Method string
	Path   string
	Access Access
	handle handlerFunc
	owner  ownerFunc
}

// Routes returns the API's routes.
func Routes() []Route {
	return []Route{
		{"GET", "/healthz", Public, (*Server).healthz, nil},
		{"GET", "/metrics", Read, (*Server).serveMetrics, nil},
		{"GET", "/info", Read, (*Server).info, nil},
		{"GET", "/v1/policies", List, (*Server).listPolicies, nil},
		{"GET", "/v1/policies/{policy}", Read, (*Server).getPolicy, nil},
		{"PUT", "/v1/policies/{policy}", Admin, (*Server).putPolicy, nil},
		{"DELETE", "/v1/policies/{policy}", Admin, (*Server).deletePolicy, nil},
		{"GET", "/v1/policies/{policy}/capacity", Read, (*Server).getCapacity, nil},
		{"GET", "/v1/policies/{policy}/revisions", Read, (*Server).listRevisions, nil},
		{"GET", "/v1/policies/{policy}/revisions/{rev}", Read, (*Server).getRevision, nil},
		{"GET", "/v1/volumes", List, (*Server).listVolumes, nil},
		{"POST", "/v1/volumes", VolumeWrite, (*Server).createVolume, nil},
		{"GET", "/v1/volumes/{policy}", Read, (*Server).listVolumes, nil},
		{"GET", "/v1/volumes/{policy}/{name}", Read, (*Server).getVolume, nil},
		{"DELETE", "/v1/volumes/{policy}/{name}", VolumeWrite, (*Server).removeVolume, nil},
		{"POST", "/v1/volumes/{policy}/{name}/resize", VolumeWrite, (*Server).resizeVolume, nil},
		{"GET", "/v1/volumes/{policy}/{name}/snapshots", Read, (*Server).listSnapshots, nil},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots", VolumeWrite, (*Server).takeSnapshot, nil},
		{"POST", "/v1/volumes/{policy}/{name}/snapshots/{snap}/copy", VolumeWrite, (*Server).copySnapshot, nil},
		{"DELETE", "/v1/volumes/{policy}/{name}/snapshots/{snap}", VolumeWrite, (*Server).removeSnapshot, nil},
		{"GET", "/v1/volumes/{policy}/{name}/runtime", Read, (*Server).getRuntime, nil},
		{"PUT", "/v1/volumes/{policy}/{name}/runtime", VolumeWrite, (*Server).putRuntime, nil},
		{"PUT", "/v1/volumes/{policy}/{name}/formatted", Host, (*Server).markFormatted, formattedOwner},
		{"GET", "/v1/runtimes", List, (*Server).watchRuntimes, nil},
		{"POST", "/v1/runtimes/watch", List, (*Server).watchRuntimesBody, nil},
		{"GET", "/v1/global", Read, (*Server).getGlobal, nil},
		{"PUT", "/v1/global", Admin, (*Server).putGlobal, nil},
		{"GET", "/v1/uses", List, (*Server).listUses, nil},
		{"GET", "/v1/uses/{policy}/{name}", Read, (*Server).getUse, nil},
		{"DELETE", "/v1/uses/{policy}/{name}", Admin, (*Server).deleteUse, nil},
		{"PUT", "/v1/uses/{policy}/{name}", Host, (*Server).acquireUse, mountRequestOwner},
		{"DELETE", "/v1/uses/{policy}/{name}/mounts/{id}", Host, (*Server).releaseUse, mountLockOwner},
		{"GET", "/v1/supervisor", Read, (*Server).listSupervisors, nil},
		{"GET", "/v1/cluster", Read, (*Server).cluster, nil},
		{"GET", "/v1/reclaimable", List, (*Server).listReclaimable, nil},
		{"GET", "/v1/trash", List, (*Server).listTrash, nil},
		{"POST", "/v1/trash/{policy}/{name}/{id}/restore", VolumeWrite, (*Server).restoreTrash, nil},
		{"DELETE", "/v1/trash/{policy}/{name}/{id}", VolumeWrite, (*Server).purgeTrash, nil},
		{"POST", "/v1/leases", Host, (*Server).grantLease, leaseRequestOwner},
		{"PUT", "/v1/leases/{id}", Host, (*Server).keepAlive, leaseOwner},
		{"DELETE", "/v1/leases/{id}", Host, (*Server).revokeLease, leaseOwner},
		{"GET", "/v1/tokens", Admin, (*Server).listTokens, nil},
		{"POST", "/v1/tokens", Admin, (*Server).createToken, nil},
		{"DELETE", "/v1/tokens/{id}", Admin, (*Server).revokeToken, nil},
		{"GET", "/v1/audit", Admin, (*Server).listAudit, nil},
		{"POST", "/v1/import/global", Admin, (*Server).importGlobal, nil},
		{"POST", "/v1/import/policies/{policy}", Admin, (*Server).importPolicy, nil},
		{"POST", "/v1/import/volumes/{policy}/{name}", Admin, (*Server).importVolume, nil},
	}
}

// handlerFunc is a route's handler: it decodes, calls and writes its answer,
// or returns an error, which the router writes (status and code from its
// kind) as the answer. A handler that returns an error has written nothing.
type handlerFunc func(*Server, http.ResponseWriter, *http.Request) error

func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	for _, rt := range Routes() {
		handle := rt.handle
		r.HandleFunc(rt.Path, s.metrics.instrument(rt.Path, s.authorize(rt, s.idempotent(func(w http.ResponseWriter, req *http.Request) {
			if err := handle(s, w, req); err != nil {
				writeError(w, err)
			}
		})))).Methods(rt.Method)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusNotFound, config.ErrorBody{Error: fmt.Sprintf("no route %s %s", req.Method, req.URL.Path), Code: config.CodeNotFound})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, config.ErrorBody{Error: fmt.Sprintf("method %s not allowed on %s", req.Method, req.URL.Path), Code: config.CodeInvalid})
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

// snapVar returns the validated {policy}/{name} and {snap} path variables.
func snapVar(r *http.Request) (config.VolumeRef, string, error) {
	ref, err := refVar(r)
	if err != nil {
		return ref, "", err
	}
	snap := mux.Vars(r)["snap"]
	_, err = config.ParseSnapshotName(snap)
	return ref, snap, err
}
