package etcdtest

import (
	"context"
	"testing"
)

func TestStartServesReadsAndWrites(t *testing.T) {
	cli, eps := Start(t)
	if len(eps) == 0 {
		t.Fatal("no endpoints")
	}
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/a", "b"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/a")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "b" {
		t.Fatalf("get /a = %v, %v", resp, err)
	}
}
