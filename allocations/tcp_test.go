package allocations

import (
	"errors"
	"net"
	"testing"
	"time"
)

// tcpRelay is a TCPRelay over a bare listener, counting its Close calls.
type tcpRelay struct {
	ln     *net.TCPListener
	closed int
}

func (r *tcpRelay) Addr() net.Addr { return r.ln.Addr() }
func (r *tcpRelay) Close() error   { r.closed++; return r.ln.Close() }

// TestListenTCP checks that TCP relay ports come from the range, share the
// in-use bitset with UDP ones (one port number, one relayed address), are
// never handed out twice, and come back on release.
func TestListenTCP(t *testing.T) {
	r := freeRange(t, 3)
	p := NewPortPool(r)
	udp, err := p.ListenUDP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var lc net.ListenConfig
	var lns []*net.TCPListener
	for range 2 {
		ln, err := p.ListenTCP(loopback, &lc)
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	seen := map[uint16]bool{udp.LocalAddr().(*net.UDPAddr).AddrPort().Port(): true}
	for _, ln := range lns {
		port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
		if !r.Contains(port) || seen[port] {
			t.Fatalf("TCP relay port %d: outside %v or already handed out (%v)", port, r, seen)
		}
		seen[port] = true
	}
	if _, err := p.ListenTCP(loopback, &lc); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("fourth relay port of three: %v, want ErrNoPorts", err)
	}
	port := lns[0].Addr().(*net.TCPAddr).AddrPort().Port()
	p.CloseTCP(lns[0])
	if p.marked(loopback, port) {
		t.Fatalf("port %d still marked after CloseTCP", port)
	}
	ln, err := p.ListenTCP(loopback, &lc)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if got := ln.Addr().(*net.TCPAddr).AddrPort().Port(); got != port {
		t.Errorf("got port %d, want the released %d", got, port)
	}
	ln.Close()
	lns[1].Close()
}

// TestRemoveClosesTCPRelay checks that removing a TCP allocation closes its
// relay once and releases its port.
func TestRemoveClosesTCPRelay(t *testing.T) {
	p := NewPortPool(freeRange(t, 2))
	ln, err := p.ListenTCP(loopback, &net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relay := &tcpRelay{ln: ln}
	tab := NewTable(Config{Ports: p})
	a := newAlloc(1, "u")
	a.FiveTuple.Transport = TCP
	a.TCP = relay
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	tab.Delete(a.FiveTuple)
	tab.Close()
	if relay.closed != 1 {
		t.Errorf("relay closed %d times, want 1", relay.closed)
	}
	if port := ln.Addr().(*net.TCPAddr).AddrPort().Port(); p.marked(loopback, port) {
		t.Errorf("port %d still marked after removal", port)
	}
}
