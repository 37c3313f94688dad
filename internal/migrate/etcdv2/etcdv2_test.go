package etcdv2

import (
	"context"
	"errors"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/internal/etcdtest"
	"github.com/volplugin/volplugin/internal/migrate"
)

const fixture = "../testdata/original-etcd/contiv-etcd-v2.json"

// The original's dump loaded into a real etcd 3.4 with the v2 API reads back
// as the same tree, TTL'd locks included; a prefix with nothing under it,
// and an etcd that is not there, are errors.
func TestReadLive(t *testing.T) {
	url := etcdtest.StartV2(t)
	etcdtest.LoadV2(t, url, fixture)
	etcdtest.PutV2(t, url, "/volplugin/users/mount/p/pgdata", `{"Hostname":"node1","Reason":"Mount"}`, time.Minute)
	f, err := os.Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := migrate.ReadDump(f, "")
	if err != nil {
		t.Fatal(err)
	}
	want["users/mount/p/pgdata"] = `{"Hostname":"node1","Reason":"Mount"}`
	ctx := context.Background()
	got, err := Read(ctx, Config{Endpoints: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("read %v\nwant %v", got.Keys(), want.Keys())
	}
	if _, err := Read(ctx, Config{Endpoints: []string{url}, Prefix: "/elsewhere"}); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("empty prefix: %v", err)
	}
	if _, err := Read(ctx, Config{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: 3 * time.Second}); !errors.Is(err, config.ErrUnavailable) {
		t.Errorf("no etcd: %v", err)
	}
	if _, err := Read(ctx, Config{}); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("no endpoint: %v", err)
	}
}
