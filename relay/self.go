package relay

import (
	"net"
	"net/netip"
	"slices"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
)

// Self-relay. The peer policy decides by address alone, and the server's
// own public address must stay allowed: relaying between two allocations
// of this server (both peers behind it) is the most common WebRTC path. But
// an allowed own address also lets a client aim its relay at the server's
// listeners (a Send indication to the listener port comes back as a Data
// indication carrying the listener's answer; a nested Allocate through the
// relay succeeds) or at any other UDP service on the host. So a peer that is
// one of the server's own addresses may be relayed to only at a port of the
// relay range, and never at a listener's port: that is another allocation's
// relay socket, and nothing else.

// ownAddrs is an immutable snapshot of the server's own addresses, read by
// the data plane without a lock (Server.own).
type ownAddrs struct {
	addrs []netip.Addr // unmapped, without zones: listeners, relay and advertised addresses, interfaces
	// loopback: a listener is bound to a wildcard address, so every
	// loopback address reaches it.
	loopback bool
	ports    []uint16 // listener ports: refused even inside the relay range
	relay    allocations.PortRange
}

// own builds the snapshot once the listeners are bound and the external
// addresses known: listener, relay and advertised (external) addresses,
// the unspecified addresses (which reach the local host), and, when a
// listener is bound to a wildcard address, every interface address.
func (s *Server) buildOwnAddrs() *ownAddrs {
	o := &ownAddrs{relay: s.cfg.RelayPorts}
	add := func(ip netip.Addr) {
		if !ip.IsValid() {
			return
		}
		ip = ip.Unmap().WithZone("")
		if !slices.Contains(o.addrs, ip) {
			o.addrs = append(o.addrs, ip)
		}
	}
	add(netip.IPv4Unspecified())
	add(netip.IPv6Unspecified())
	add(s.cfg.RelayIP)
	for _, ip := range s.cfg.RelayIPs {
		add(ip)
	}
	for _, ip := range s.primary.list() {
		add(ip)
	}
	wildcard := false
	for _, spec := range s.cfg.Listeners {
		for _, ip := range s.relayIPFor(spec).list() {
			add(ip)
		}
	}
	s.mu.Lock()
	bound := slices.Clone(s.bound)
	s.mu.Unlock()
	for _, b := range bound {
		ap := addrPortOf(b.Addr)
		if !ap.IsValid() {
			continue
		}
		if ap.Addr().IsUnspecified() {
			wildcard = true
		}
		add(ap.Addr())
		if !slices.Contains(o.ports, ap.Port()) {
			o.ports = append(o.ports, ap.Port())
		}
	}
	ext := s.cfg.ExternalIP
	add(ext.V4)
	add(ext.V6)
	for relay, public := range ext.ByRelay {
		add(relay)
		add(public)
	}
	if wildcard {
		o.loopback = true
		if ifaddrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range ifaddrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					add(p.Addr())
				}
			}
		} else {
			s.log.Warn("cannot list interface addresses: relaying to them is refused only for the listener and relay addresses", "err", err)
		}
	}
	return o
}

// denies reports whether peer is one of the server's own addresses at a
// port that is no relay socket's. IPv4 addresses spelled in IPv6 (mapped,
// compatible, NAT64, 6to4) are compared by the IPv4 address they carry,
// as the peer policy does. HOT: allocation-free.
func (o *ownAddrs) denies(peer netip.AddrPort) bool {
	if o == nil {
		return false
	}
	ip := peer.Addr().Unmap()
	if v4, ok := auth.EmbeddedIPv4(ip); ok { // mapped, compatible, NAT64, 6to4
		ip = v4
	}
	if !o.isOwn(ip) {
		return false
	}
	port := peer.Port()
	return !o.relay.Contains(port) || slices.Contains(o.ports, port)
}

func (o *ownAddrs) isOwn(ip netip.Addr) bool {
	if o.loopback && ip.IsLoopback() {
		return true
	}
	ip = ip.WithZone("")
	for _, a := range o.addrs {
		if a == ip {
			return true
		}
	}
	return false
}

// peerDropReason says whether the data plane may relay to or from peer
// now: the current peer policy (which a reload may have narrowed since the
// permission was made) and the own-address rule. It returns the drop
// reason and false when not. HOT: two atomic loads, no allocation.
func (s *Server) peerDropReason(peer netip.AddrPort) (DropReason, bool) {
	if !s.policy().Allowed(peer.Addr()) {
		return DropPolicy, false
	}
	if s.own.Load().denies(peer) {
		return DropOwnAddress, false
	}
	return 0, true
}

// allowPeer is peerDropReason counting the drop.
func (s *Server) allowPeer(peer netip.AddrPort) bool {
	r, ok := s.peerDropReason(peer)
	if !ok {
		s.stats.drop(r)
	}
	return ok
}
