package allocations

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrNoPorts: every port of the relay range is in use on that address
// (RFC 8656 §7.2: 508 Insufficient Capacity).
var ErrNoPorts = errors.New("no free relay port")

// PortRange is an inclusive range of ports for relay sockets (UDP, and
// TCP for TCP allocations).
type PortRange struct{ Low, High uint16 }

// ParsePortRange parses "LOW-HIGH" (e.g. "49152-65535") or a single port.
// Ports must be 1-65535 and LOW <= HIGH.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	low, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("allocations: port range %q: %w", s, err)
	}
	high, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("allocations: port range %q: %w", s, err)
	}
	r := PortRange{Low: low, High: high}
	if err := r.validate(); err != nil {
		return PortRange{}, fmt.Errorf("allocations: port range %q: %w", s, err)
	}
	return r, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	if p == 0 {
		return 0, errors.New("port 0 is not allowed (the range must name real ports)")
	}
	return uint16(p), nil
}

func (r PortRange) validate() error {
	switch {
	case r.Low == 0:
		return errors.New("port 0 is not allowed (the range must name real ports)")
	case r.Low > r.High:
		return fmt.Errorf("low port %d is above high port %d", r.Low, r.High)
	}
	return nil
}

// Len returns the number of ports in the range.
func (r PortRange) Len() int { return int(r.High) - int(r.Low) + 1 }

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return port >= r.Low && port <= r.High }

// String formats the range as "LOW-HIGH".
func (r PortRange) String() string {
	return strconv.Itoa(int(r.Low)) + "-" + strconv.Itoa(int(r.High))
}

// PortPool binds relay sockets on ports of a range. It is safe for
// concurrent use. See the package doc for the in-use bitset.
type PortPool struct {
	r PortRange

	mu sync.Mutex
	// mu guards the following.
	used map[netip.Addr][]uint64 // local IP -> bit i: port Low+i handed out, not released
}

// NewPortPool returns a pool for r. An invalid range makes every ListenUDP fail.
func NewPortPool(r PortRange) *PortPool {
	return &PortPool{r: r, used: make(map[netip.Addr][]uint64)}
}

// ListenUDP binds a UDP socket on ip at a free port of the range: it starts
// at a random port and probes upwards, wrapping around, skipping ports the
// kernel reports in use (EADDRINUSE). Ports this pool handed out and that
// were not released are probed last. It returns an error wrapping ErrNoPorts
// when every port is taken, and any other bind error at once.
func (p *PortPool) ListenUDP(ip netip.Addr) (*net.UDPConn, error) {
	return bindFree(p, ip, "udp", true, func(network string, ap netip.AddrPort) (*net.UDPConn, error) {
		return net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
	})
}

// bindFree binds a socket of proto ("udp" or "tcp") on ip with listen at a
// free port of the range, starting at a random port and probing upwards,
// wrapping around, skipping ports the kernel reports in use (EADDRINUSE).
// With probeMarked, ports this pool handed out and that were not released
// are probed last; otherwise never.
func bindFree[C any](p *PortPool, ip netip.Addr, proto string, probeMarked bool, listen func(network string, ap netip.AddrPort) (C, error)) (C, error) {
	var none C
	if err := p.r.validate(); err != nil {
		return none, fmt.Errorf("allocations: relay ports %v: %w", p.r, err)
	}
	if !ip.IsValid() {
		return none, errors.New("allocations: relay socket: no relay address")
	}
	ip = ip.Unmap()
	network := proto + "6"
	if ip.Is4() {
		network = proto + "4"
	}
	n := p.r.Len()
	start := rand.IntN(n)

	p.mu.Lock()
	defer p.mu.Unlock()
	used := p.used[ip]
	if used == nil {
		used = make([]uint64, (n+63)/64)
		p.used[ip] = used
	}
	passes := 1
	if probeMarked {
		passes = 2
	}
	// Pass 0 probes ports not marked in use; pass 1 the marked ones, in
	// case a socket was closed without Release. Each port is tried at most
	// once.
	for pass := range passes {
		for i := range n {
			idx := (start + i) % n
			if marked := used[idx/64]&(1<<(idx%64)) != 0; marked != (pass == 1) {
				continue
			}
			ap := netip.AddrPortFrom(ip, p.r.Low+uint16(idx))
			c, err := listen(network, ap)
			if err == nil {
				used[idx/64] |= 1 << (idx % 64)
				return c, nil
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return none, fmt.Errorf("allocations: %s relay socket on %v: %w", proto, ap, err)
		}
	}
	return none, fmt.Errorf("allocations: %s relay socket on %v: all %d ports %v in use (widen --relay-ports): %w",
		proto, ip, n, p.r, ErrNoPorts)
}

// ListenUDPPort binds a UDP socket on ip at exactly port, which must be in
// the range and free (for EVEN-PORT reservations, RFC 8656 §7.2: the port
// after an even one). It fails with the bind error when the port is taken.
func (p *PortPool) ListenUDPPort(ip netip.Addr, port uint16) (*net.UDPConn, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || !p.r.Contains(port) {
		return nil, fmt.Errorf("allocations: relay socket on %v: port outside %v: %w", netip.AddrPortFrom(ip, port), p.r, ErrNoPorts)
	}
	network := "udp6"
	if ip.Is4() {
		network = "udp4"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	if err != nil {
		return nil, fmt.Errorf("allocations: relay socket on %v: %w", netip.AddrPortFrom(ip, port), err)
	}
	used := p.used[ip]
	if used == nil {
		used = make([]uint64, (p.r.Len()+63)/64)
		p.used[ip] = used
	}
	idx := int(port - p.r.Low)
	used[idx/64] |= 1 << (idx % 64)
	return c, nil
}

// Close closes a relay socket the pool handed out and releases its port.
func (p *PortPool) Close(conn *net.UDPConn) {
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = conn.Close()
	p.Release(local)
}

// Release marks ap's port free again after its socket has been closed. The
// Table calls it for every removed allocation when Config.Ports is set.
// Releasing a port the pool did not hand out is harmless.
func (p *PortPool) Release(ap netip.AddrPort) {
	if !p.r.Contains(ap.Port()) {
		return
	}
	idx := int(ap.Port() - p.r.Low)
	p.mu.Lock()
	defer p.mu.Unlock()
	if used := p.used[ap.Addr().Unmap()]; used != nil {
		used[idx/64] &^= 1 << (idx % 64)
	}
}

// releaseAddr releases a socket's local address as returned by LocalAddr.
func (p *PortPool) releaseAddr(local net.Addr) {
	switch a := local.(type) {
	case *net.UDPAddr:
		p.Release(a.AddrPort())
	case *net.TCPAddr:
		p.Release(a.AddrPort())
	}
}

// ListenTCP binds a listening TCP socket on ip at a free port of the range
// through lc (whose Control may set socket options), for the relayed
// address of a TCP allocation (RFC 6062). UDP and TCP relay ports share
// the in-use bitset, so a port number is one relayed address whatever its
// protocol. Unlike ListenUDP it never probes ports marked in use: a relay
// socket that allows port reuse (SO_REUSEPORT, which Connect needs to
// dial from the relayed address) would bind beside another allocation's.
// It returns an error wrapping ErrNoPorts when every unmarked port is
// taken, and any other bind error at once.
func (p *PortPool) ListenTCP(ip netip.Addr, lc *net.ListenConfig) (*net.TCPListener, error) {
	return bindFree(p, ip, "tcp", false, func(network string, ap netip.AddrPort) (*net.TCPListener, error) {
		ln, err := lc.Listen(context.Background(), network, ap.String())
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	})
}

// CloseTCP closes a listener ListenTCP handed out and releases its port.
func (p *PortPool) CloseTCP(ln *net.TCPListener) {
	local := ln.Addr()
	_ = ln.Close()
	p.releaseAddr(local)
}
