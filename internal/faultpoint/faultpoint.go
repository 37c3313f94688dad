// Package faultpoint is a fault injector for the fault suite
// (systemtests/faults_*_test.go): it lets a test stop a daemon at a named
// step of an operation so that kill -9 lands exactly there.
//
// Hit(ctx, name, subject) marks such a step of an operation on subject (a
// volume, "policy/name"). In normal builds (the Makefile's build, packages,
// the managed plugin) it does nothing and costs nothing. Only in a binary
// built with the extra build tag "faults" (as the system tests build theirs)
// does it act, and only when the environment variable VOLPLUGIN_FAULTPOINT
// names that step: a comma-separated list of NAME (any subject) or
// NAME@SUBJECT entries, so one process can stop several operations on
// different volumes at different steps. It prints "faultpoint ENTRY reached"
// to stderr and blocks until ctx ends, so the test can wait for the line and
// kill the process. A step that must never be passed late is marked with
// context.WithoutCancel(ctx): it blocks forever. A step in a request handler
// is marked with the request's context: it blocks until the client goes away
// (the client killed), and the answer then reaches nobody.
package faultpoint

import "strings"

// Env is the environment variable that names the step to stop at.
const Env = "VOLPLUGIN_FAULTPOINT"

// Reached is the line printed when the step an entry of VOLPLUGIN_FAULTPOINT
// names is reached.
func Reached(entry string) string { return "faultpoint " + entry + " reached" }

// match returns the entry of list (VOLPLUGIN_FAULTPOINT) that names step
// name on subject, "" if none.
func match(list, name, subject string) string {
	for _, e := range strings.Split(list, ",") {
		if e == name || e == name+"@"+subject {
			return e
		}
	}
	return ""
}
