package etcdtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
)

// FreePorts finds n consecutive free loopback ports and returns the first,
// for etcd members whose URLs must be known before any starts (etcd-dev
// numbers its members' ports from a base; embedded clusters of volmasters).
// Another process may take one before etcd binds it; then etcd's bind error
// says so.
func FreePorts(n int) (int, error) {
	// Below the kernel's ephemeral range (32768 and up by default): a
	// port found free there is not handed to another test's :0 listener or
	// outgoing connection before etcd binds it, as one from the range can be.
	for range 50 {
		base := 20000 + rand.IntN(12000-n)
		if allFree(base, n) {
			return base, nil
		}
	}
	return 0, errors.New("no run of free loopback ports found")
}

func allFree(base, n int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}
