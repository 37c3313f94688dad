//go:build pacific

package systemtests

// buildTags are passed on to the binaries TestMain builds, so they link Ceph
// when the tests do.
const buildTags = "pacific"
