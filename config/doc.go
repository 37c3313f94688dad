// Package config holds the volplugin data model: policies, volumes, runtime
// options, global configuration and mount-lock records, together with the one
// place that validates names and parses sizes and the documented etcd key
// layout (keys.go).
//
// The package has no network or etcd dependency; config/store persists these
// types in etcd.
package config
