package e2e

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy sits between a kiosk and the center and breaks connections.
// Each of the next `faulty` connections (counting those open when the
// faults are armed) is cut at a random point: after a random number of
// further bytes in one direction, or after a random time. That lands
// anywhere from the TLS handshake to the middle of a request or its
// answer. Later connections pass untouched, so every session can finish.
// A test can also hold the center's answers on the current connections and
// cut them on demand.
type faultProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	rng      *rand.Rand
	faulty   int
	conns    map[*proxied]struct{}
	accepted int
	cut      int
	wg       sync.WaitGroup
}

// Directions of a proxied connection.
const (
	toCenter = 0
	toKiosk  = 1
)

// proxied is one kiosk connection and its leg to the center.
type proxied struct {
	client, server net.Conn
	once           sync.Once
	held           atomic.Bool     // swallow the center's bytes
	count          [2]atomic.Int64 // bytes forwarded, by direction
	limit          [2]atomic.Int64 // cut when count reaches it; -1: never
}

// close closes both legs; it reports whether this call did it.
func (c *proxied) close() bool {
	done := false
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
		done = true
	})
	return done
}

// newFaultProxy listens on a free loopback port and forwards to target,
// breaking the first `faulty` connections.
func newFaultProxy(t testing.TB, target string, faulty int, seed uint64) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, faulty: faulty, rng: rand.New(rand.NewPCG(seed, 0x6b696f736b)), conns: map[*proxied]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

// Addr is where kiosks connect.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// arm makes the current connection(s) and the next ones, n in all, faulty.
func (p *faultProxy) arm(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faulty = n
	for c := range p.conns {
		p.planLocked(c)
	}
}

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// planLocked chooses where c is cut, if faults remain.
func (p *faultProxy) planLocked(c *proxied) {
	if p.faulty <= 0 {
		return
	}
	p.faulty--
	// Measured on this stack: a connection's TLS handshake and upgrade
	// take about 1.5 KB towards the center and 2 KB back; a session then
	// sends about 4.8 KB (status frames, the 2.5 KB issue, the outcome)
	// and receives about 6 KB (domestic) or 14 KB (overseas). So each cut
	// below falls within a session's traffic: in the handshake, before,
	// during or after the issue, in the answer, around the outcome.
	switch p.rng.IntN(3) {
	case 0:
		c.limit[toCenter].Store(c.count[toCenter].Load() + p.rng.Int64N(4500))
	case 1:
		c.limit[toKiosk].Store(c.count[toKiosk].Load() + p.rng.Int64N(6000))
	default:
		after := 20*time.Millisecond + time.Duration(p.rng.Int64N(int64(2*time.Second)))
		time.AfterFunc(after, func() { p.breakConn(c) })
	}
}

func (p *faultProxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &proxied{client: client, server: server}
	c.limit[toCenter].Store(-1)
	c.limit[toKiosk].Store(-1)
	p.mu.Lock()
	p.accepted++
	p.conns[c] = struct{}{}
	p.planLocked(c)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(c, toCenter, server, client) }()
	go func() { defer wg.Done(); p.pipe(c, toKiosk, client, server) }()
	wg.Wait()
}

// pipe copies src to dst in one direction, cutting the connection at the
// direction's limit and swallowing the center's bytes while held.
func (p *faultProxy) pipe(c *proxied, dir int, dst, src net.Conn) {
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n := c.count[dir].Load()
			if lim := c.limit[dir].Load(); lim >= 0 && n+int64(k) >= lim {
				if lim > n {
					dst.Write(buf[:lim-n])
				}
				p.breakConn(c)
				return
			}
			c.count[dir].Add(int64(k))
			if dir == toCenter || !c.held.Load() {
				if _, err := dst.Write(buf[:k]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
func (p *faultProxy) breakConn(c *proxied) {
	if c.close() {
		p.mu.Lock()
		p.cut++
		p.mu.Unlock()
	}
}

// holdAnswers makes the current connections swallow everything the
// center sends from now on, as a network that has silently died would.
func (p *faultProxy) holdAnswers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.held.Store(true)
	}
}

// cutAll breaks every current connection.
func (p *faultProxy) cutAll() {
	p.mu.Lock()
	conns := make([]*proxied, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		p.breakConn(c)
	}
}

// stats reports how many connections were accepted and cut.
func (p *faultProxy) stats() (accepted, cut int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.cut
}
