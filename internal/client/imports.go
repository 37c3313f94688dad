package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/volplugin/volplugin/config"
)

// The import routes are create-if-absent (a repeat answers "unchanged"), so
// their POSTs are retried without an Idempotency-Key: volmaster records
// keyed requests in etcd, and a dry run must write nothing.

func (c *Client) importRecord(ctx context.Context, path string, v any, dryRun bool) (config.ImportResult, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return config.ImportResult{}, err
	}
	var q url.Values
	if dryRun {
		q = url.Values{"dry-run": {strconv.FormatBool(dryRun)}}
	}
	var out config.ImportResult
	return out, c.doHeader(ctx, http.MethodPost, path, q, body, &out, nil, idempotentWrite)
}

// ImportGlobal imports a global configuration (kept if another is stored).
func (c *Client) ImportGlobal(ctx context.Context, g config.Global, dryRun bool) (config.ImportResult, error) {
	return c.importRecord(ctx, "/v1/import/global", g, dryRun)
}

// ImportPolicy imports a policy with its revisions, oldest first.
func (c *Client) ImportPolicy(ctx context.Context, name string, in config.PolicyImport, dryRun bool) (config.ImportResult, error) {
	return c.importRecord(ctx, "/v1/import/policies/"+url.PathEscape(name), in, dryRun)
}

// ImportVolume imports a volume record, adopting its image and the image's
// snapshots.
func (c *Client) ImportVolume(ctx context.Context, v config.Volume, dryRun bool) (config.ImportResult, error) {
	return c.importRecord(ctx, "/v1/import/volumes/"+refPath(v.Ref()), config.VolumeImport{Volume: v}, dryRun)
}
