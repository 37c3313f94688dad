package volcli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressEvery is how often the progress line is redrawn.
const progressEvery = 200 * time.Millisecond

// progress is a line on a terminal's stderr saying what a long call is doing
// and for how long: the API reports no progress of its own, so the elapsed
// time is what tells a waiting user it is not stuck.
type progress struct {
	w     io.Writer
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	what string
	turn int
}

// progress starts a progress line about what on stderr if it is a
// terminal; otherwise (scripts, logs) it shows nothing. Call stop before
// printing anything else.
func (k *call) progress(what string) *progress {
	p := &progress{w: k.stderr, start: time.Now(), what: what, done: make(chan struct{})}
	if !isTerminal(k.stderr) {
		p.w = nil
		return p
	}
	p.draw()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-tick.C:
				p.draw()
			}
		}
	}()
	return p
}

// set changes what the line says.
func (p *progress) set(what string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	p.what = what
	p.mu.Unlock()
	p.draw()
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.turn++
	// Carriage return and erase-line: the line is rewritten in place.
	fmt.Fprintf(p.w, "\r\x1b[K%c %s (%s)", `|/-\`[p.turn%4], p.what, time.Since(p.start).Truncate(time.Second))
}

// stop erases the line. It may be called more than once.
func (p *progress) stop() {
	if p.w == nil {
		return
	}
	close(p.done)
	p.wg.Wait()
	fmt.Fprint(p.w, "\r\x1b[K")
	p.w = nil
}
