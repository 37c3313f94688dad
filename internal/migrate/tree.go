// Package migrate brings an installation of the original volplugin
// (contiv/volplugin, etcd v2) over to this one: it reads the original's key
// tree, converts its policies (with their archived revisions), global
// configuration and volumes (each with its own policy copy and runtime) into
// this suite's records, saying of every field it cannot carry over why, and
// hands them to volmaster's import routes, the one writer of records. Ceph
// images are adopted where they are, under their names (<policy>.<volume>),
// as formatted volumes.
//
// volcli migrate from-contiv is its command line; subpackage etcdv2 reads a
// live etcd v2 endpoint.
package migrate

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/volplugin/volplugin/config"
)

// DefaultPrefix is the original's etcd key prefix.
const DefaultPrefix = "/volplugin"

// Tree is the original's key tree under its prefix: every key holding a
// value, relative to the prefix ("policies/p", "volumes/p/pgdata/create"),
// and its value. Directories are implied by their keys.
type Tree map[string]string

// Keys returns the tree's keys, sorted.
func (t Tree) Keys() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Node is a node of an etcd v2 answer (GET /v2/keys/...?recursive=true):
// a directory with its nodes, or a key with its value.
type Node struct {
	Key   string  `json:"key"`
	Dir   bool    `json:"dir,omitempty"`
	Value string  `json:"value,omitempty"`
	Nodes []*Node `json:"nodes,omitempty"`
	TTL   int64   `json:"ttl,omitempty"`
}

// dump is the answer an etcd v2 dump holds.
type dump struct {
	Action string `json:"action"`
	Node   *Node  `json:"node"`
}

// ReadDump reads a tree from a dump of the original's etcd (the answer of
// GET /v2/keys/<prefix>?recursive=true&sorted=true, as a file) under
// prefix.
func ReadDump(r io.Reader, prefix string) (Tree, error) {
	var d dump
	if err := json.NewDecoder(io.LimitReader(r, 1<<30)).Decode(&d); err != nil {
		return nil, fmt.Errorf("etcd v2 dump: %v: %w", err, config.ErrInvalid)
	}
	if d.Node == nil {
		return nil, fmt.Errorf("etcd v2 dump: no \"node\": not the answer of GET /v2/keys/...?recursive=true: %w", config.ErrInvalid)
	}
	return FromNode(d.Node, prefix)
}

// FromNode collects the keys under prefix of an etcd v2 node tree.
func FromNode(root *Node, prefix string) (Tree, error) {
	prefix, err := cleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	t := Tree{}
	var walk func(n *Node)
	walk = func(n *Node) {
		if n.Dir {
			for _, c := range n.Nodes {
				walk(c)
			}
			return
		}
		if rel, ok := strings.CutPrefix(n.Key, prefix+"/"); ok && rel != "" {
			t[rel] = n.Value
		}
	}
	walk(root)
	if root.Key != prefix && !strings.HasPrefix(prefix, root.Key+"/") && root.Key != "" && root.Key != "/" {
		return nil, fmt.Errorf("etcd v2 tree of %s holds nothing under %s: %w", root.Key, prefix, config.ErrInvalid)
	}
	return t, nil
}

// cleanPrefix checks an etcd v2 key prefix like /volplugin.
func cleanPrefix(prefix string) (string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasPrefix(prefix, "/") || path.Clean(prefix) != prefix || prefix == "/" {
		return "", fmt.Errorf("prefix %q must be a clean absolute key like /volplugin: %w", prefix, config.ErrInvalid)
	}
	return prefix, nil
}
