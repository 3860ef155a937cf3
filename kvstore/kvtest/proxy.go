package kvtest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a target and can cut every connection
// (Cut: closed, as by a peer that went away) or hold every byte (Hold: a
// silent partition, as a firewall dropping packets) to simulate a network
// partition between a client and its etcd.
type Proxy struct {
	Addr   string
	target string
	l      net.Listener

	mu    sync.Mutex // guards conns, down, held
	cond  *sync.Cond // on mu: held ended
	conns map[net.Conn]struct{}
	down  bool
	held  bool
	wg    sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to target.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, l: l, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = l.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(c) })
	}
}

func (p *Proxy) forward(c net.Conn) {
	p.wait() // a held proxy does not connect either
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		_ = u.Close()
		p.drop(c)
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		p.copy(dst, src) // ends when either side is closed or cut
		_ = dst.Close()
		_ = src.Close()
	}
	wg.Go(func() { pipe(u, c) })
	wg.Go(func() { pipe(c, u) })
	wg.Wait()
	p.drop(c)
	p.drop(u)
}

// copy forwards src to dst; while held, what it read waits.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait returns once the proxy is not held (or is cut).
func (p *Proxy) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.held && !p.down {
		p.cond.Wait()
	}
}

func (p *Proxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	p.cond.Broadcast()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Hold stops forwarding, silently: connections stay open, what either
// side sends waits (new connections are accepted and wait too), as behind
// a firewall that drops packets, until Restore.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
}

// Restore accepts connections again (after Cut), and forwards what waited
// (after Hold).
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.held = false, false
	p.cond.Broadcast()
}
