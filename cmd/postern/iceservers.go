package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// iceServers is the JSON a WebRTC application passes to RTCPeerConnection:
// {"iceServers":[{"urls":[...],"username":"...","credential":"..."}]}
// (W3C WebRTC 1.0, RTCConfiguration and RTCIceServer). The credentials API
// serves the same type.
type iceServers = iceapi.Configuration

// iceServer is one RTCIceServer. Browsers ignore the credentials for stun:
// URLs, so one entry carries every URL of the server.
type iceServer = iceapi.ICEServer

// restCredentialTTL is how long the credential printed at start stays valid.
const restCredentialTTL = 24 * time.Hour

// restCredentialUser is the USER part of the printed EXPIRY:USER username.
const restCredentialUser = "postern"

// endpoint is where clients reach one listener: its kind and the address
// they dial (already the advertised host, not the bound one).
type endpoint struct {
	kind relay.ListenerKind
	addr netip.AddrPort
	name string // when set, the host written in URLs instead of addr's IP (ice_servers.host, --host)
}

// hostPolicy picks the host written in the URLs. The first valid address
// wins: external (the NAT's address), relay (where relay sockets bind), the
// listener's own address when it is specific; else primary() (the host's
// default-route address) is asked.
//
// A listener on every address of both families (":3478", "[::]:3478") is
// also listed with a global IPv6 address (host6), so that clients on
// IPv6-only networks (many mobile ones) can reach it.
type hostPolicy struct {
	external, relay netip.Addr
	primary         func() (netip.Addr, error)
	// relay6 is the IPv6 relay address when relay is the IPv4 one;
	// primary6 finds the host's IPv6 address (relay.PrimaryIP6), nil: none.
	relay6   netip.Addr
	primary6 func() (netip.Addr, error)
}

// host6 returns the IPv6 address clients should also dial for a listener
// bound on bound, given host, the address host returned: only for a
// listener on every address that accepts IPv6 (dualStack: written without
// a host, or bound to "::"), when host is not IPv6 already, and only a
// global address (not ULA, link-local or loopback: unreachable from other
// networks): relay6, else the host's primary IPv6 address.
func (p hostPolicy) host6(bound, host netip.Addr, dualStack bool) (netip.Addr, bool) {
	bound = bound.Unmap()
	if host.Is6() || !(dualStack || (bound.Is6() && bound.IsUnspecified())) {
		return netip.Addr{}, false
	}
	if p.relay6.IsValid() {
		return p.relay6, globalIPv6(p.relay6)
	}
	if p.primary6 == nil {
		return netip.Addr{}, false
	}
	ip, err := p.primary6()
	return ip, err == nil && globalIPv6(ip)
}

// globalIPv6 reports whether ip is a global IPv6 unicast address: not
// IPv4-mapped, link-local, loopback or unique local (fc00::/7).
func globalIPv6(ip netip.Addr) bool {
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// host returns the address clients should dial for a listener bound on
// bound.
func (p hostPolicy) host(bound netip.Addr) (netip.Addr, error) {
	bound = bound.Unmap()
	switch {
	case p.external.IsValid():
		return p.external, nil
	case p.relay6.IsValid() && bound.Is6() && !bound.IsUnspecified():
		return p.relay6, nil // an IPv6-only listener is reached over IPv6
	case p.relay.IsValid():
		return p.relay, nil
	case bound.IsValid() && !bound.IsUnspecified():
		return bound, nil
	}
	if p.primary == nil {
		return netip.Addr{}, fmt.Errorf("listener on %v: no address to advertise: set --%s", bound, flagExternalIP)
	}
	ip, err := p.primary()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listener on %v: finding this host's address: %w (set --%s)", bound, err, flagExternalIP)
	}
	return ip.Unmap(), nil
}

// endpoints maps the bound listeners to the addresses clients dial.
func endpoints(bound []relay.BoundListener, p hostPolicy) ([]endpoint, error) {
	out := make([]endpoint, 0, len(bound))
	for _, b := range bound {
		ap, err := addrPort(b.Addr)
		if err != nil {
			return nil, fmt.Errorf("%v listener: %w", b.Kind, err)
		}
		host, err := p.host(ap.Addr())
		if err != nil {
			return nil, err
		}
		out = append(out, endpoint{kind: b.Kind, addr: netip.AddrPortFrom(host, ap.Port())})
		if ip6, ok := p.host6(ap.Addr(), host, false); ok {
			out = append(out, endpoint{kind: b.Kind, addr: netip.AddrPortFrom(ip6, ap.Port())})
		}
	}
	return out, nil
}

// addrPort converts the net.Addr of a bound socket.
func addrPort(a net.Addr) (netip.AddrPort, error) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), nil
	case *net.TCPAddr:
		return a.AddrPort(), nil
	case nil:
		return netip.AddrPort{}, fmt.Errorf("no address")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", a, err)
	}
	return ap, nil
}

// iceURLs returns the STUN and TURN URLs of the endpoints, without
// duplicates, UDP first, then TCP, then TLS: clients try them in order and
// UDP is the cheapest, TLS the most likely to pass a firewall.
//
//   - udp:     stun:HOST:PORT and turn:HOST:PORT?transport=udp (RFC 7064, RFC 7065)
//   - tcp:     turn:HOST:PORT?transport=tcp
//   - tls:     turns:HOST:PORT?transport=tcp
//   - tcp+tls: both of the above on its port
//
// IPv6 hosts are bracketed (RFC 3986 IP-literal).
func iceURLs(eps []endpoint) []string {
	var udp, tcp, tls []string
	for _, e := range eps {
		host := e.addr.Addr().String()
		if e.name != "" {
			host = e.name
		}
		hp := net.JoinHostPort(host, strconv.Itoa(int(e.addr.Port())))
		switch e.kind {
		case relay.UDP:
			udp = append(udp, "stun:"+hp, "turn:"+hp+"?transport=udp")
		case relay.TCP:
			tcp = append(tcp, "turn:"+hp+"?transport=tcp")
		case relay.TLS:
			tls = append(tls, "turns:"+hp+"?transport=tcp")
		case relay.TCPTLS:
			tcp = append(tcp, "turn:"+hp+"?transport=tcp")
			tls = append(tls, "turns:"+hp+"?transport=tcp")
		}
	}
	seen := make(map[string]bool)
	var out []string
	for _, group := range [][]string{udp, tcp, tls} {
		for _, u := range group {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}
