package iolimit

import (
	"os"
	"testing"
)

func TestProbe(t *testing.T) {
	h := newFakeHost(t)
	s, err := Probe(Options{ProcRoot: h.proc})
	if err != nil {
		t.Fatal(err)
	}
	// The FAKE blkio root has its throttle files; the FAKE cgroup2 root
	// lists no controllers.
	if s.BlkioRoot != h.blkio || !s.Throttle || s.Cgroup2Root != h.cgrp2 || s.IO || !s.Usable() {
		t.Errorf("Probe = %+v", s)
	}

	h.write("cgroup/unified/cgroup.controllers", "cpu io memory pids\n")
	if err := os.Remove(h.blkio + "/" + v1Files[0]); err != nil {
		t.Fatal(err)
	}
	s, err = Probe(Options{ProcRoot: h.proc})
	if err != nil || s.Throttle || !s.IO || !s.Usable() {
		t.Errorf("Probe with io in cgroup2 and no v1 throttle = %+v, %v", s, err)
	}

	h.write("cgroup/unified/cgroup.controllers", "cpu memory\n")
	if s, err = Probe(Options{ProcRoot: h.proc}); err != nil || s.Usable() {
		t.Errorf("Probe with neither = %+v, %v; want not usable", s, err)
	}

	h.write("proc/self/mountinfo", "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
	if _, err := Probe(Options{ProcRoot: h.proc}); err == nil {
		t.Error("Probe without cgroup mounts succeeded")
	}
}
