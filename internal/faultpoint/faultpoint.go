// Package faultpoint is a fault injector for the fault suite
// (systemtests/faults_*_test.go): it lets a test stop a daemon at a named
// step of an operation so that kill -9 lands exactly there.
//
// Hit(ctx, name) marks such a step. In normal builds (the Makefile's build,
// packages, the managed plugin) it does nothing and costs nothing. Only in a
// binary built with the extra build tag "faults" (as the system tests build
// theirs) does it act, and only when the environment variable
// VOLPLUGIN_FAULTPOINT names that step: it prints "faultpoint NAME reached"
// to stderr and blocks forever (whatever ctx says: the step must not be
// passed late), so the test can wait for the line and kill the process.
package faultpoint

// Env is the environment variable that names the step to stop at.
const Env = "VOLPLUGIN_FAULTPOINT"

// Reached is the line printed (with the name) when a step is reached.
func Reached(name string) string { return "faultpoint " + name + " reached" }
