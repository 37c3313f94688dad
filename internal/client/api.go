package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/volplugin/volplugin/config"
)

// Health checks that volmaster answers and reaches etcd.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// Policies lists policy names.
func (c *Client) Policies(ctx context.Context) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodGet, "/v1/policies", nil, nil, &out)
}

// PoliciesDetail lists the current policies, sorted by name.
func (c *Client) PoliciesDetail(ctx context.Context) ([]config.Policy, error) {
	var out []config.Policy
	return out, c.do(ctx, http.MethodGet, "/v1/policies", url.Values{"detail": {"true"}}, nil, &out)
}

// Policy returns the current version of a policy.
func (c *Client) Policy(ctx context.Context, name string) (config.Policy, error) {
	var out config.Policy
	return out, c.do(ctx, http.MethodGet, "/v1/policies/"+url.PathEscape(name), nil, nil, &out)
}

// PutPolicy uploads a policy document (JSON) under name; volmaster validates
// it and stores it as a new revision. It returns the stored policy and its
// revision number.
func (c *Client) PutPolicy(ctx context.Context, name string, doc []byte) (config.Policy, int64, error) {
	var out config.Policy
	var hdr http.Header
	if err := c.doHeader(ctx, http.MethodPut, "/v1/policies/"+url.PathEscape(name), nil, doc, &out, &hdr, keyedWrite); err != nil {
		return config.Policy{}, 0, err
	}
	rev, _ := strconv.ParseInt(hdr.Get(config.PolicyRevisionHeader), 10, 64)
	return out, rev, nil
}

// DeletePolicy removes a policy; its volumes and history stay.
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/policies/"+url.PathEscape(name), nil, nil, nil)
}

// PolicyRevisions lists a policy's revisions, oldest first.
func (c *Client) PolicyRevisions(ctx context.Context, name string) ([]config.PolicyRevision, error) {
	var out []config.PolicyRevision
	return out, c.do(ctx, http.MethodGet, "/v1/policies/"+url.PathEscape(name)+"/revisions", nil, nil, &out)
}

// PolicyRevision returns one revision of a policy.
func (c *Client) PolicyRevision(ctx context.Context, name string, rev int64) (config.Policy, error) {
	var out config.Policy
	path := "/v1/policies/" + url.PathEscape(name) + "/revisions/" + strconv.FormatInt(rev, 10)
	return out, c.do(ctx, http.MethodGet, path, nil, nil, &out)
}

func volumesPath(policy string) string {
	if policy == "" {
		return "/v1/volumes"
	}
	return "/v1/volumes/" + url.PathEscape(policy)
}

// Volumes lists the volumes of a policy, or of all policies if policy is "".
func (c *Client) Volumes(ctx context.Context, policy string) ([]config.VolumeRef, error) {
	var out []config.VolumeRef
	return out, c.do(ctx, http.MethodGet, volumesPath(policy), nil, nil, &out)
}

// VolumesDetail is Volumes with every full record.
func (c *Client) VolumesDetail(ctx context.Context, policy string) ([]config.Volume, error) {
	var out []config.Volume
	return out, c.do(ctx, http.MethodGet, volumesPath(policy), url.Values{"detail": {"true"}}, nil, &out)
}

// Volume returns a volume's full record.
func (c *Client) Volume(ctx context.Context, ref config.VolumeRef) (config.Volume, error) {
	var out config.Volume
	return out, c.do(ctx, http.MethodGet, "/v1/volumes/"+refPath(ref), nil, nil, &out)
}

// CreateVolume creates a volume from its policy and options. It is not
// retried: a second attempt would answer "exists".
func (c *Client) CreateVolume(ctx context.Context, req config.VolumeRequest) (config.Volume, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return config.Volume{}, err
	}
	var out config.Volume
	return out, c.do(ctx, http.MethodPost, "/v1/volumes", nil, body, &out)
}

// RemoveVolume removes a volume: it goes to the trash (the entry is
// returned) unless it is ephemeral (destroyed, nil). opts.Force deletes
// every record and leaves the image (nil); opts.Unprotect allows removing a
// protected volume (volplugin never sets it).
func (c *Client) RemoveVolume(ctx context.Context, ref config.VolumeRef, opts config.RemoveOptions) (*config.TrashEntry, error) {
	q := url.Values{}
	if opts.Force {
		q.Set("force", "true")
	}
	if opts.Unprotect {
		q.Set("unprotect", "true")
	}
	var out config.TrashEntry
	if err := c.do(ctx, http.MethodDelete, "/v1/volumes/"+refPath(ref), q, nil, &out); err != nil {
		return nil, err
	}
	if out.ID == "" {
		return nil, nil
	}
	return &out, nil
}

// Trash lists trash entries: all (ref zero), one policy's (ref.Name
// empty) or one volume name's.
func (c *Client) Trash(ctx context.Context, ref config.VolumeRef) ([]config.TrashEntry, error) {
	q := url.Values{}
	if ref.Policy != "" {
		q.Set("policy", ref.Policy)
	}
	if ref.Name != "" {
		q.Set("name", ref.Name)
	}
	var out []config.TrashEntry
	return out, c.do(ctx, http.MethodGet, "/v1/trash", q, nil, &out)
}

func trashPath(tref config.TrashRef) string {
	return "/v1/trash/" + refPath(tref.Volume) + "/" + url.PathEscape(tref.ID)
}

// RestoreTrash brings a trash entry back under its name and returns the
// volume; config.ErrExists while a volume of that name exists.
func (c *Client) RestoreTrash(ctx context.Context, tref config.TrashRef) (config.Volume, error) {
	var out config.Volume
	return out, c.do(ctx, http.MethodPost, trashPath(tref)+"/restore", nil, nil, &out)
}

// PurgeTrash destroys a trash entry and its image for good.
func (c *Client) PurgeTrash(ctx context.Context, tref config.TrashRef) error {
	return c.do(ctx, http.MethodDelete, trashPath(tref), nil, nil, nil)
}

// ResizeVolume grows a volume to size (like "2GiB") and returns its record.
func (c *Client) ResizeVolume(ctx context.Context, ref config.VolumeRef, size string) (config.Volume, error) {
	body, err := json.Marshal(config.ResizeRequest{Size: size})
	if err != nil {
		return config.Volume{}, err
	}
	var out config.Volume
	return out, c.do(ctx, http.MethodPost, "/v1/volumes/"+refPath(ref)+"/resize", nil, body, &out)
}

// MarkFormatted tells volmaster that host made v's filesystem (its first
// mkfs succeeded), so that it is never formatted again. Idempotent (PUT, so
// retried when volmaster is unavailable); it returns the volume record.
func (c *Client) MarkFormatted(ctx context.Context, v config.Volume, host string) (config.Volume, error) {
	body, err := json.Marshal(config.FormattedRequest{Host: host, CreatedAt: v.CreatedAt})
	if err != nil {
		return config.Volume{}, err
	}
	var out config.Volume
	return out, c.do(ctx, http.MethodPut, "/v1/volumes/"+refPath(v.Ref())+"/formatted", nil, body, &out)
}

// Runtime returns a volume's runtime options.
func (c *Client) Runtime(ctx context.Context, ref config.VolumeRef) (config.RuntimeOptions, error) {
	var out config.RuntimeOptions
	return out, c.do(ctx, http.MethodGet, "/v1/volumes/"+refPath(ref)+"/runtime", nil, nil, &out)
}

// WaitRuntimes long-polls for runtime changes of refs after etcd revision
// since (0: the current runtime of each at once), waiting up to wait; ctx
// must allow for the wait.
// The volumes go in the body (POST /v1/runtimes/watch), so any number up
// to volmaster's limit fits; it is a read, so it carries no
// Idempotency-Key.
func (c *Client) WaitRuntimes(ctx context.Context, refs []config.VolumeRef, since int64, wait time.Duration) (config.RuntimeChanges, error) {
	q := config.RuntimePoll{Volumes: make([]string, len(refs)), Since: since, Wait: wait.String()}
	for i, r := range refs {
		q.Volumes[i] = r.String()
	}
	body, err := json.Marshal(q)
	if err != nil {
		return config.RuntimeChanges{}, err
	}
	var out config.RuntimeChanges
	return out, c.doHeader(ctx, http.MethodPost, "/v1/runtimes/watch", nil, body, &out, nil, readOnly)
}

// PutRuntime replaces a volume's runtime options with a JSON document.
func (c *Client) PutRuntime(ctx context.Context, ref config.VolumeRef, doc []byte) (config.RuntimeOptions, error) {
	var out config.RuntimeOptions
	return out, c.do(ctx, http.MethodPut, "/v1/volumes/"+refPath(ref)+"/runtime", nil, doc, &out)
}

// Global returns the global configuration.
func (c *Client) Global(ctx context.Context) (config.Global, error) {
	var out config.Global
	return out, c.do(ctx, http.MethodGet, "/v1/global", nil, nil, &out)
}

// PutGlobal replaces the global configuration with a JSON document.
func (c *Client) PutGlobal(ctx context.Context, doc []byte) (config.Global, error) {
	var out config.Global
	return out, c.do(ctx, http.MethodPut, "/v1/global", nil, doc, &out)
}

// Uses lists every mount lock.
func (c *Client) Uses(ctx context.Context) ([]config.Use, error) {
	var out []config.Use
	return out, c.do(ctx, http.MethodGet, "/v1/uses", nil, nil, &out)
}

// Use returns one volume's mount lock.
func (c *Client) Use(ctx context.Context, ref config.VolumeRef) (config.Use, error) {
	var out config.Use
	return out, c.do(ctx, http.MethodGet, "/v1/uses/"+refPath(ref), nil, nil, &out)
}

// RemoveUse breaks one volume's mount lock.
func (c *Client) RemoveUse(ctx context.Context, ref config.VolumeRef) error {
	return c.do(ctx, http.MethodDelete, "/v1/uses/"+refPath(ref), nil, nil, nil)
}

// Snapshots lists a volume's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, ref config.VolumeRef) ([]config.Snapshot, error) {
	var out []config.Snapshot
	return out, c.do(ctx, http.MethodGet, "/v1/volumes/"+refPath(ref)+"/snapshots", nil, nil, &out)
}

// TakeSnapshot takes a snapshot of a volume now. Not retried.
func (c *Client) TakeSnapshot(ctx context.Context, ref config.VolumeRef) (config.Snapshot, error) {
	var out config.Snapshot
	return out, c.do(ctx, http.MethodPost, "/v1/volumes/"+refPath(ref)+"/snapshots", nil, []byte("{}"), &out)
}

// TakeLabelledSnapshot takes a snapshot of a volume now under label, or
// returns the volume's snapshot that has that label already. A labelled
// snapshot is never pruned; RemoveSnapshot removes it.
func (c *Client) TakeLabelledSnapshot(ctx context.Context, ref config.VolumeRef, label string) (config.Snapshot, error) {
	body, err := json.Marshal(config.SnapshotRequest{Label: label})
	if err != nil {
		return config.Snapshot{}, err
	}
	var out config.Snapshot
	return out, c.do(ctx, http.MethodPost, "/v1/volumes/"+refPath(ref)+"/snapshots", nil, body, &out)
}

// RemoveSnapshot removes snapshot snap of ref; config.ErrNotFound if there
// is none.
func (c *Client) RemoveSnapshot(ctx context.Context, ref config.VolumeRef, snap string) error {
	return c.do(ctx, http.MethodDelete, "/v1/volumes/"+refPath(ref)+"/snapshots/"+url.PathEscape(snap), nil, nil, nil)
}

// CopySnapshot creates volume newName (same policy) from snapshot snap of
// ref. Not retried.
func (c *Client) CopySnapshot(ctx context.Context, ref config.VolumeRef, snap, newName string) (config.Volume, error) {
	body, err := json.Marshal(config.CopyRequest{Name: newName})
	if err != nil {
		return config.Volume{}, err
	}
	var out config.Volume
	path := "/v1/volumes/" + refPath(ref) + "/snapshots/" + url.PathEscape(snap) + "/copy"
	return out, c.do(ctx, http.MethodPost, path, nil, body, &out)
}

// Supervisors returns the status of every running volsupervisor.
func (c *Client) Supervisors(ctx context.Context) ([]config.SupervisorStatus, error) {
	var out []config.SupervisorStatus
	return out, c.do(ctx, http.MethodGet, "/v1/supervisor", nil, nil, &out)
}

// Cluster returns the control plane's ops view: volmasters, etcd members
// with health and leader, volsupervisors and their leader.
func (c *Client) Cluster(ctx context.Context) (config.ClusterStatus, error) {
	var out config.ClusterStatus
	return out, c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &out)
}

// Reclaimable lists volumes unused for longer than their policy's
// reclaim.unused-for.
func (c *Client) Reclaimable(ctx context.Context) ([]config.Reclaimable, error) {
	var out []config.Reclaimable
	return out, c.do(ctx, http.MethodGet, "/v1/reclaimable", nil, nil, &out)
}

// Info returns volmaster's self-description (GET /info) as raw JSON.
func (c *Client) Info(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/info", nil, nil, &out)
}

// Capacity is the space the backend of policy's volumes has left for new
// ones; a policy whose backend cannot tell is config.ErrInvalid.
func (c *Client) Capacity(ctx context.Context, policy string) (config.Capacity, error) {
	var out config.Capacity
	return out, c.do(ctx, http.MethodGet, "/v1/policies/"+url.PathEscape(policy)+"/capacity", nil, nil, &out)
}
