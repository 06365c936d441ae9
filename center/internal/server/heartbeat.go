package server

import (
	"sync"
	"time"
)

// pinger sends every connection a ping once per heartbeat from one
// goroutine, instead of a ticker and a goroutine per connection: with tens
// of thousands of idle kiosks, per-connection timers and stacks are most of
// what a connection costs. Connections are spread over the heartbeat's
// seconds, so the pings go out evenly rather than all at once; a handful of
// workers write them, so one stalled kiosk delays nobody.
type pinger struct {
	every time.Duration
	mu    sync.Mutex
	slots [][]*conn // one slot per tick
	next  int       // slot the next connection goes into
	pos   map[*conn]int
}

const pingTick = time.Second

func newPinger(every time.Duration) *pinger {
	n := max(1, int(every/pingTick))
	return &pinger{every: every, slots: make([][]*conn, n), pos: map[*conn]int{}}
}

func (p *pinger) add(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.next
	p.next = (p.next + 1) % len(p.slots)
	p.slots[i] = append(p.slots[i], c)
	p.pos[c] = i
}

func (p *pinger) remove(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.pos[c]
	if !ok {
		return
	}
	delete(p.pos, c)
	s := p.slots[i]
	for j, o := range s {
		if o == c {
			s[j] = s[len(s)-1]
			p.slots[i] = s[:len(s)-1]
			break
		}
	}
}

// run pings one slot per tick until stop is closed.
func (p *pinger) run(stop <-chan struct{}, tick func()) {
	t := time.NewTicker(pingTick)
	defer t.Stop()
	slot := 0
	work := make(chan *conn, 256)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.ping(pingTick)
			}
		}()
	}
	defer func() { close(work); wg.Wait() }()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		batch := append([]*conn(nil), p.slots[slot]...)
		p.mu.Unlock()
		slot = (slot + 1) % len(p.slots)
		for _, c := range batch {
			select {
			case work <- c:
			case <-stop:
				return
			}
		}
		if tick != nil {
			tick()
		}
	}
}
