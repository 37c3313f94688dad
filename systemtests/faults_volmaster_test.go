package systemtests

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// volmaster is unreachable when the container stops: the release is queued
// and done once volmaster is back.
func faultReleaseWhileVolmasterDown(t *testing.T) {
	e := newFaultEnv(t, "vpf-rel", 3)
	a := e.startHost("hostA", "")
	const vol = "policy1/rel"
	e.createVolume(a, vol)
	if _, errMsg := a.mount(t, vol, "c1"); errMsg != "" {
		t.Fatal(errMsg)
	}
	var c faultCounts
	_ = e.vm.stop()
	if errMsg := a.unmount(t, vol, "c1"); errMsg != "" {
		t.Fatalf("unmount while volmaster is down: %s", errMsg)
	}
	e.startVolmaster()
	waitForQuiet(t, 20*time.Second, func() bool { return e.holder(vol) == "" })
	if e.holder(vol) != "" {
		c.LeakedLocks++
	}
	c.LocksLost = e.lostLocks()
	e.finish(&c, map[string][]string{vol: nil})
	recordRow(t, faultRow{Fault: "release while volmaster unreachable", Step: "unmount", Counts: c})
}

// blackhole is a TCP proxy to volmaster that can stop answering (accepting
// and holding connections, forwarding nothing): a half-open peer, which a
// real volmaster cannot be made into on demand. A fault injector, named so.
type blackhole struct {
	ln     net.Listener
	target string
	holed  atomic.Bool
}

func startBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bh := &blackhole{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go bh.serve(c)
		}
	}()
	return bh
}

func (bh *blackhole) serve(c net.Conn) {
	defer c.Close()
	if bh.holed.Load() {
		_, _ = io.Copy(io.Discard, c) // never answer
		return
	}
	u, err := net.Dial("tcp", bh.target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = copyUnlessHoled(bh, c, u); done <- struct{}{} }()
	<-done
}

// copyUnlessHoled forwards answers until the hole opens, then drops them:
// connections made before the fault go half-open too.
func copyUnlessHoled(bh *blackhole, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 && !bh.holed.Load() {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
}

// A half-open connection to volmaster during renewal (shorter than the
// TTL): the renewal times out instead of hanging, is retried, and the lease
// and lock survive.
func faultHalfOpenRenewal(t *testing.T) {
	e := newFaultEnv(t, "vpf-half", 6)
	bh := startBlackhole(t, e.listen)
	e.volmasterURLForPlugin = "http://" + bh.ln.Addr().String()
	a := e.startHost("hostA", "")
	const vol = "policy1/half"
	e.createVolume(a, vol)
	_, w := e.mountWriting(a, vol, "c1")
	var c faultCounts
	lease := func() float64 { l, _ := a.info(t)["lease"].(map[string]any); id, _ := l["id"].(float64); return id }
	before := lease()
	bh.holed.Store(true)
	time.Sleep(3 * time.Second) // the fault lasts half the TTL
	bh.holed.Store(false)
	waitFor(t, 10*time.Second, "a renewal after the half-open period", func() bool {
		l, _ := a.info(t)["lease"].(map[string]any)
		r, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["renewed"]))
		return time.Since(r) < 2*time.Second
	})
	if lease() != before {
		c.LocksLost++ // the lease lapsed
	}
	if e.holder(vol) != "hostA" {
		c.LocksLost++
	}
	_, failed := w.halt()
	c.FailedWrites = int(failed)
	c.LocksLost += e.lostLocks()
	e.finish(&c, map[string][]string{vol: {"c1"}})
	recordRow(t, faultRow{Fault: "half-open TCP to volmaster (3 s, TTL 6 s)", Step: "lease renewal", Counts: c})
}
