package config

// Request and response bodies of volmaster's REST API that are not records
// themselves, defined once here for volmaster and its client
// (internal/client) alike. The records (Volume, Use, HostLease...) and the
// other bodies (VolumeRequest, ResizeRequest, MountRequest, RuntimeChanges,
// ImportResult) live beside what they describe.

// ErrorBody is the JSON body of every error answer: the message, and the
// code (ErrorCode) that names its kind.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// LeaseRequest is the body of POST /v1/leases.
type LeaseRequest struct {
	Host string `json:"host"`
	// Holder is the daemon asking (see Use); empty from older daemons.
	Holder string `json:"holder,omitempty"`
}

// ReleaseResponse is the answer of DELETE /v1/uses/{policy}/{name}/mounts/{id}:
// the mount IDs the host still holds (the lock goes with the last one).
type ReleaseResponse struct {
	MountIDs []string `json:"mount-ids"`
}

// RuntimePoll is what a runtime long poll asks for: the body of POST
// /v1/runtimes/watch, and the query of GET /v1/runtimes.
type RuntimePoll struct {
	// Volumes are policy/name references.
	Volumes []string `json:"volumes"`
	// Since is the etcd revision after which changes are wanted (0: the
	// current runtime of each at once).
	Since int64 `json:"since"`
	// Wait is how long to wait for a change (a Go duration).
	Wait string `json:"wait"`
}

// SnapshotRequest is the optional body of POST
// /v1/volumes/{policy}/{name}/snapshots.
type SnapshotRequest struct {
	// Label names the snapshot for its caller: the volume's snapshot with
	// this label is returned if there is one, and it is never pruned.
	Label string `json:"label,omitempty"`
}

// CopyRequest is the body of POST
// /v1/volumes/{policy}/{name}/snapshots/{snap}/copy: the new volume's name
// (same policy).
type CopyRequest struct {
	Name string `json:"name"`
}
