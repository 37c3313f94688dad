package config

import "time"

// VolmasterStatus is what each running volmaster publishes in etcd under
// its own lease (Keys.Volmaster): the record goes when the volmaster does.
type VolmasterStatus struct {
	ID string `json:"id"`
	// URL is the API address it listens on, as it sees it.
	URL     string    `json:"url"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// EtcdMember is one member of the etcd cluster as the ops view shows it.
type EtcdMember struct {
	// ID is the member ID in hex, as etcdctl prints it.
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"client-urls"`
	// Healthy says the member answered its status call in time.
	Healthy bool   `json:"healthy"`
	Leader  bool   `json:"leader"`
	Version string `json:"version,omitempty"`
	DBSize  int64  `json:"db-size,omitempty"`
	// Error says why the member is not healthy.
	Error string `json:"error,omitempty"`
}

// ClusterStatus is the body of GET /v1/cluster: every part of the control
// plane and whether it answers.
type ClusterStatus struct {
	// Answered is the ID of the volmaster that answered.
	Answered   string            `json:"answered-by"`
	Volmasters []VolmasterStatus `json:"volmasters"`
	Etcd       []EtcdMember      `json:"etcd"`
	// EtcdError is set when the member list itself could not be read.
	EtcdError string `json:"etcd-error,omitempty"`
	// SupervisorLeader is the name of the volsupervisor that leads ("" when
	// none runs).
	SupervisorLeader string             `json:"supervisor-leader"`
	Supervisors      []SupervisorStatus `json:"supervisors"`
}
