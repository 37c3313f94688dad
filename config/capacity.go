package config

// Capacity is the space left for new volumes of a policy, as the backend
// that creates them reports it (GET /v1/policies/{policy}/capacity).
type Capacity struct {
	Policy  string `json:"policy"`
	Backend string `json:"backend"`
	// Store names the space counted (the local data dir's filesystem, a
	// Ceph cluster's pool): policies with the same store share its bytes.
	Store string `json:"store"`
	// AvailableBytes may still be written to new images. Images are thin:
	// sizes promised to existing volumes but not written yet are not
	// subtracted.
	AvailableBytes int64 `json:"available-bytes"`
}
