package etcdtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Link is a TCP proxy in front of a real etcd that a test can cut: a
// network partition on demand. It is a fault injector, named so. Cutting a
// link instead of closing etcd keeps the port owned by the test, so no other
// process's etcd (a parallel test package) can take the port and answer in
// its place, and etcd's own shutdown timing plays no part.
type Link struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// NewLink proxies to endpoint (an etcd client URL) until the test ends.
func NewLink(tb testing.TB, endpoint string) *Link {
	tb.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		tb.Fatalf("etcd endpoint %q: %v", endpoint, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &Link{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.serve(c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		l.Cut()
	})
	return l
}

// URL is the endpoint to give a client instead of etcd's own.
func (l *Link) URL() string { return "http://" + l.ln.Addr().String() }

// Cut closes every connection through the link and refuses new ones (they
// are accepted and closed at once) until Restore.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// Restore lets connections through again.
func (l *Link) Restore() {
	l.mu.Lock()
	l.cut = false
	l.mu.Unlock()
}

// track registers c unless the link is cut, in which case it closes c.
func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) serve(c net.Conn) {
	if !l.track(c) {
		return
	}
	u, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	if !l.track(u) {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
	l.mu.Lock()
	delete(l.conns, c)
	delete(l.conns, u)
	l.mu.Unlock()
}
