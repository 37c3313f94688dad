//go:build !pacific

package systemtests

// buildTags: without the pacific tag the binaries have no Ceph backend.
const buildTags = ""
