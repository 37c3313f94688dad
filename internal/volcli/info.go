package volcli

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"
)

func infoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "info",
		Usage: "print volmaster's version, Go and kernel versions, counts and global config, and the cluster: " +
			"every volmaster, the etcd members with health and leader, the volsupervisor leader",
		Action: e.action(0, info),
	}
}

func info(k *call) error {
	ctx, cancel := k.ctx()
	defer cancel()
	raw, err := k.api.Info(ctx)
	if err != nil {
		return k.fail(err, "")
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(raw, &out); err != nil {
		return k.fail(fmt.Errorf("volmaster's /info is not a JSON object: %w", err), "")
	}
	// The cluster view is added, not required: a part of it that cannot be
	// read is said in its place, and /info still printed.
	cl, err := k.api.Cluster(ctx)
	if err != nil {
		out["cluster-error"], _ = json.Marshal(err.Error())
	} else {
		out["cluster"], _ = json.Marshal(cl)
	}
	return k.printJSON(out)
}
