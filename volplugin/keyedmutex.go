package volplugin

import (
	"sync"

	"github.com/volplugin/volplugin/config"
)

// keyedMutex serializes work on one volume (mount, unmount, relock) without
// holding up the others.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[config.VolumeRef]*refMutex
}

type refMutex struct {
	sync.Mutex
	users int
}

// lock locks ref and returns the unlock function.
func (k *keyedMutex) lock(ref config.VolumeRef) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[config.VolumeRef]*refMutex{}
	}
	m := k.locks[ref]
	if m == nil {
		m = &refMutex{}
		k.locks[ref] = m
	}
	m.users++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.users--; m.users == 0 {
			delete(k.locks, ref)
		}
		k.mu.Unlock()
	}
}
