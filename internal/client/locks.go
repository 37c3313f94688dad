package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/volplugin/volplugin/config"
)

// GrantLease gets a new host lease for the daemon holder (config.HolderID)
// on host; its TTL comes from the global configuration. A retry is answered
// with the first attempt's lease (its Idempotency-Key), never a second one.
func (c *Client) GrantLease(ctx context.Context, host, holder string) (config.HostLease, error) {
	body, err := json.Marshal(config.LeaseRequest{Host: host, Holder: holder})
	if err != nil {
		return config.HostLease{}, err
	}
	var out config.HostLease
	return out, c.do(ctx, http.MethodPost, "/v1/leases", nil, body, &out)
}

// KeepAlive renews a host lease; config.ErrNotFound once it has expired.
func (c *Client) KeepAlive(ctx context.Context, id int64) (config.HostLease, error) {
	var out config.HostLease
	return out, c.do(ctx, http.MethodPut, "/v1/leases/"+strconv.FormatInt(id, 10), nil, []byte("{}"), &out)
}

// RevokeLease ends a host lease and with it every lock on it.
func (c *Client) RevokeLease(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodDelete, "/v1/leases/"+strconv.FormatInt(id, 10), nil, nil, nil)
}

// AcquireUse takes (or extends) the host's mount lock on a volume for one
// Docker mount ID.
func (c *Client) AcquireUse(ctx context.Context, ref config.VolumeRef, req config.MountRequest) (config.Use, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return config.Use{}, err
	}
	var out config.Use
	return out, c.do(ctx, http.MethodPut, "/v1/uses/"+refPath(ref), nil, body, &out)
}

// ReleaseUse drops one mount ID (req.MountID) from the lock of the daemon
// req.Holder on req.Hostname and returns the IDs still held; the lock goes
// with the last one. req.Lease is not used.
func (c *Client) ReleaseUse(ctx context.Context, ref config.VolumeRef, req config.MountRequest) ([]string, error) {
	var out config.ReleaseResponse
	path := "/v1/uses/" + refPath(ref) + "/mounts/" + url.PathEscape(req.MountID)
	q := url.Values{"host": {req.Hostname}}
	if req.Holder != "" {
		q.Set("holder", req.Holder)
	}
	// Without an Idempotency-Key (two etcd writes less on every unmount): a
	// release is idempotent by itself. A repeat after the first attempt
	// dropped the ID changes nothing, and answers the IDs left or, if the
	// lock went with the last one, 404, which the caller takes as done.
	err := c.doHeader(ctx, http.MethodDelete, path, q, nil, &out, nil, idempotentWrite)
	return out.MountIDs, err
}
