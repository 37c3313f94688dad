// Package docs holds the volplugin documentation (Markdown, openapi.yaml)
// and, in docs_test.go, the checks that keep it true to the code: every
// REST route, volcli command, daemon flag, etcd key, policy field and quoted
// error message is compared with its definition in the code.
//
// docs/volcli.md is generated from volcli's command definitions; after
// changing them run `make docs` or `go generate ./docs/`.
package docs

//go:generate go run ../internal/clidoc/cmd/volcli-doc -o volcli.md
