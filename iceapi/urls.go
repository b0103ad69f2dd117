package iceapi

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
)

// MintJSON returns the iceServers JSON for urls with a TURN REST API
// credential for user, minted from secret and valid for ttl from now (what
// `postern ice-servers` and serve's start-up printout write).
func MintJSON(urls []string, secret, user string, ttl time.Duration, now time.Time) ([]byte, error) {
	b, err := json.Marshal(RESTConfiguration(urls, secret, user, ttl, now))
	if err != nil {
		return nil, fmt.Errorf("iceServers JSON: %w", err)
	}
	return b, nil
}

// RESTConfiguration is the RTCConfiguration listing urls with a TURN REST
// API credential for user (auth.MintREST: EXPIRY:USER and
// base64(HMAC-SHA1(secret, username))), valid for ttl from now. It is what
// a MintFunc built on one shared secret returns.
func RESTConfiguration(urls []string, secret, user string, ttl time.Duration, now time.Time) Configuration {
	username, password := auth.MintREST(secret, user, ttl, now)
	return Configuration{ICEServers: []ICEServer{{URLs: urls, Username: username, Credential: password}}}
}

// HostPolicy picks the host written in the URLs of a listener. The first
// valid address wins: External (the NAT's address), Relay (where relay
// sockets bind), the listener's own address when it is specific; else
// Primary (the host's default-route address, relay.PrimaryIP) is asked.
//
// A listener on every address of both families (":3478", "[::]:3478") is
// also listed with a global IPv6 address, so that clients on IPv6-only
// networks (many mobile ones) can reach it: Relay6, else Primary6's.
type HostPolicy struct {
	External, Relay netip.Addr
	Primary         func() (netip.Addr, error)
	// Relay6 is the IPv6 relay address when Relay is the IPv4 one;
	// Primary6 finds the host's IPv6 address (relay.PrimaryIP6), nil: none.
	Relay6   netip.Addr
	Primary6 func() (netip.Addr, error)
}

// NoAddressError is why HostPolicy found no host for a listener: none was
// configured and Primary was missing (Err nil) or failed (Err). The caller
// says how to configure one (external_ip).
type NoAddressError struct {
	Listener netip.Addr // where the listener is bound
	Err      error
}

func (e *NoAddressError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("listener on %v: no address to advertise", e.Listener)
	}
	return fmt.Sprintf("listener on %v: finding this host's address: %v", e.Listener, e.Err)
}

func (e *NoAddressError) Unwrap() error { return e.Err }

// endpoint is where clients reach one listener: its kind and the address
// they dial (already the advertised host, not the bound one).
type endpoint struct {
	kind relay.ListenerKind
	addr netip.AddrPort
	name string // when set, the host written in URLs instead of addr's IP (ice_servers.host, --host)
}

// host6 returns the IPv6 address clients should also dial for a listener
// bound on bound, given host, the address host returned: only for a
// listener on every address that accepts IPv6 (dualStack: written without
// a host, or bound to "::"), when host is not IPv6 already, and only a
// global address (not ULA, link-local or loopback: unreachable from other
// networks): Relay6, else the host's primary IPv6 address.
func (p HostPolicy) host6(bound, host netip.Addr, dualStack bool) (netip.Addr, bool) {
	bound = bound.Unmap()
	if host.Is6() || !(dualStack || (bound.Is6() && bound.IsUnspecified())) {
		return netip.Addr{}, false
	}
	if p.Relay6.IsValid() {
		return p.Relay6, globalIPv6(p.Relay6)
	}
	if p.Primary6 == nil {
		return netip.Addr{}, false
	}
	ip, err := p.Primary6()
	return ip, err == nil && globalIPv6(ip)
}

// globalIPv6 reports whether ip is a global IPv6 unicast address: not
// IPv4-mapped, link-local, loopback or unique local (fc00::/7).
func globalIPv6(ip netip.Addr) bool {
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// host returns the address clients should dial for a listener bound on
// bound.
func (p HostPolicy) host(bound netip.Addr) (netip.Addr, error) {
	bound = bound.Unmap()
	switch {
	case p.External.IsValid():
		return p.External, nil
	case p.Relay6.IsValid() && bound.Is6() && !bound.IsUnspecified():
		return p.Relay6, nil // an IPv6-only listener is reached over IPv6
	case p.Relay.IsValid():
		return p.Relay, nil
	case bound.IsValid() && !bound.IsUnspecified():
		return bound, nil
	}
	if p.Primary == nil {
		return netip.Addr{}, &NoAddressError{Listener: bound}
	}
	ip, err := p.Primary()
	if err != nil {
		return netip.Addr{}, &NoAddressError{Listener: bound, Err: err}
	}
	return ip.Unmap(), nil
}

// BoundURLs returns the URLs of the bound listeners as clients dial them,
// UDP first, then TCP, then TLS: with name as the host when it is set
// (ice_servers.host, a certificate's domain), else with the address p
// picks for each listener. The start-up printout and the credentials API
// use it.
func BoundURLs(bound []relay.BoundListener, name string, p HostPolicy) ([]string, error) {
	if name == "" {
		eps, err := endpoints(bound, p)
		if err != nil {
			return nil, err
		}
		return urls(eps), nil
	}
	eps := make([]endpoint, 0, len(bound))
	for _, b := range bound {
		ap, err := addrPort(b.Addr)
		if err != nil {
			return nil, fmt.Errorf("%v listener: %w", b.Kind, err)
		}
		eps = append(eps, endpoint{kind: b.Kind, addr: ap, name: name})
	}
	return urls(eps), nil
}

// endpoints maps the bound listeners to the addresses clients dial.
func endpoints(bound []relay.BoundListener, p HostPolicy) ([]endpoint, error) {
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

// SpecURLs returns the URLs of configured, not yet bound, listeners, UDP
// first, then TCP, then TLS: with name as the host when it is set, else the host
// p picks for each listener's address. A listener written without a host
// is on every address of both families, so it is also listed with the
// global IPv6 address p finds. A port of 0 has no meaning before the server
// binds it: it is an error.
func SpecURLs(specs []relay.ListenSpec, name string, p HostPolicy) ([]string, error) {
	eps, err := specEndpoints(specs, name, p)
	if err != nil {
		return nil, err
	}
	return urls(eps), nil
}

// specEndpoints maps configured listeners to the endpoints clients dial.
func specEndpoints(specs []relay.ListenSpec, name string, p HostPolicy) ([]endpoint, error) {
	eps := make([]endpoint, 0, len(specs))
	for _, spec := range specs {
		host, port, err := net.SplitHostPort(spec.Addr)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", spec, err)
		}
		ap, err := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", port))
		if err != nil || ap.Port() == 0 {
			return nil, fmt.Errorf("listener %s: port %s: the kernel picks port 0 when the server starts, so it cannot be listed: name the port", spec, port)
		}
		if name != "" {
			eps = append(eps, endpoint{kind: spec.Kind, addr: ap, name: name})
			continue
		}
		var bound netip.Addr
		switch {
		case host == "localhost":
			bound = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		case host != "":
			if bound, err = netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("listener %s: %w", spec, err)
			}
		}
		ip, err := p.host(bound)
		if err != nil {
			return nil, err
		}
		eps = append(eps, endpoint{kind: spec.Kind, addr: netip.AddrPortFrom(ip, ap.Port())})
		if ip6, ok := p.host6(bound, ip, host == ""); ok {
			eps = append(eps, endpoint{kind: spec.Kind, addr: netip.AddrPortFrom(ip6, ap.Port())})
		}
	}
	return eps, nil
}

// urls returns the STUN and TURN URLs of the endpoints, without
// duplicates, UDP first, then TCP, then TLS: clients try them in order and
// UDP is the cheapest, TLS the most likely to pass a firewall.
//
//   - udp:     stun:HOST:PORT and turn:HOST:PORT?transport=udp (RFC 7064, RFC 7065)
//   - tcp:     turn:HOST:PORT?transport=tcp
//   - tls:     turns:HOST:PORT?transport=tcp
//   - tcp+tls: both of the above on its port
//
// IPv6 hosts are bracketed (RFC 3986 IP-literal).
func urls(eps []endpoint) []string {
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
