package relay

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/postern/postern/internal/stunclient"
)

// ExternalIPs maps the addresses relay sockets bind on to the public
// addresses advertised for them in XOR-RELAYED-ADDRESS, for a host behind
// 1:1 NAT (a cloud VM with a private address and a public one, a container
// with published ports). The zero value maps nothing.
type ExternalIPs struct {
	// V4 and V6, when valid, are advertised for every relay address of
	// their family that ByRelay does not name.
	V4, V6 netip.Addr
	// ByRelay maps one relay address to its public address, for hosts with
	// several interfaces. Keys and values are unmapped (plain IPv4 or
	// IPv6) and of the same family.
	ByRelay map[netip.Addr]netip.Addr
}

// Public returns the address advertised for relay, or the zero Addr when
// relay is advertised as it is.
func (m ExternalIPs) Public(relay netip.Addr) netip.Addr {
	relay = relay.Unmap()
	if p, ok := m.ByRelay[relay]; ok {
		return p
	}
	if relay.Is4() {
		return m.V4
	}
	return m.V6
}

// IsZero reports whether m maps nothing.
func (m ExternalIPs) IsZero() bool {
	return !m.V4.IsValid() && !m.V6.IsValid() && len(m.ByRelay) == 0
}

// String formats m in the form ParseExternalIPs reads, comma-separated:
// "203.0.113.7, 10.0.0.5=198.51.100.9"; "" when m maps nothing.
func (m ExternalIPs) String() string {
	var parts []string
	for _, ip := range []netip.Addr{m.V4, m.V6} {
		if ip.IsValid() {
			parts = append(parts, ip.String())
		}
	}
	for _, relay := range slices.SortedFunc(maps.Keys(m.ByRelay), netip.Addr.Compare) {
		parts = append(parts, relay.String()+"="+m.ByRelay[relay].String())
	}
	return strings.Join(parts, ", ")
}

// ParseExternalIPs reads a list of "PUBLIC" (advertised for every relay
// address of its family) and "RELAY=PUBLIC" (advertised for that relay
// address only) values, as given to --external-ip. At most one PUBLIC per
// family; RELAY and PUBLIC of one entry must be of the same family.
func ParseExternalIPs(values []string) (ExternalIPs, error) {
	var m ExternalIPs
	for _, v := range values {
		relayText, publicText, mapped := strings.Cut(strings.TrimSpace(v), "=")
		if !mapped {
			publicText, relayText = relayText, ""
		}
		public, err := parseUnicast(publicText)
		if err != nil {
			return ExternalIPs{}, fmt.Errorf("external address %q: %w", v, err)
		}
		if !mapped {
			dst := &m.V4
			if public.Is6() {
				dst = &m.V6
			}
			if dst.IsValid() {
				return ExternalIPs{}, fmt.Errorf("external address %q: %v is already advertised for every relay address of its family: keep one, or write RELAY=PUBLIC pairs", v, *dst)
			}
			*dst = public
			continue
		}
		relay, err := parseUnicast(relayText)
		if err != nil {
			return ExternalIPs{}, fmt.Errorf("external address %q: relay address: %w", v, err)
		}
		if relay.Is4() != public.Is4() {
			return ExternalIPs{}, fmt.Errorf("external address %q: relay and public address must be of the same family (IPv4 or IPv6)", v)
		}
		if _, dup := m.ByRelay[relay]; dup {
			return ExternalIPs{}, fmt.Errorf("external address %q: relay address %v is mapped twice: keep one", v, relay)
		}
		if m.ByRelay == nil {
			m.ByRelay = make(map[netip.Addr]netip.Addr)
		}
		m.ByRelay[relay] = public
	}
	return m, nil
}

// parseUnicast parses one unicast address without a zone, unmapped.
func parseUnicast(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address: write e.g. 203.0.113.7 or 2001:db8::7", s)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%v is not a unicast address", ip)
	}
	return ip, nil
}

// DiscoverPublicIP finds the public address of the host address local by
// asking the STUN servers (host:port) in turn, and returns the first answer
// with the server that gave it: stunclient.PublicIP, which says how.
func DiscoverPublicIP(ctx context.Context, local netip.Addr, servers []string) (netip.Addr, string, error) {
	return stunclient.PublicIP(ctx, local, servers)
}

// discoverExternal fills in the public address of every relay address the
// configuration does not map, when Config.DiscoverExternalIP is set. It
// runs in Start before any listener is bound; a relay address no server
// answers for stops the start, since advertising a private address makes
// every relayed candidate useless.
func (s *Server) discoverExternal(ctx context.Context) error {
	if len(s.cfg.DiscoverExternalIP) == 0 {
		return nil
	}
	// The caller's map is not ours to change.
	ext := s.cfg.ExternalIP
	ext.ByRelay = maps.Clone(ext.ByRelay)
	for _, ip := range s.relayIPs() {
		if ext.Public(ip).IsValid() {
			continue
		}
		public, server, err := DiscoverPublicIP(ctx, ip, s.cfg.DiscoverExternalIP)
		if err != nil && ip.Is6() {
			// IPv6 is seldom behind NAT, and many STUN servers answer
			// over IPv4 only: the address is advertised as it is.
			s.log.Warn("external address auto-discovery: no answer for an IPv6 relay address; advertising it as it is", "relay_ip", ip.String(), "err", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("relay: external address auto-discovery: %w: check the STUN servers (relay.stun_servers) or set relay.external_ip explicitly", err)
		}
		if public == ip {
			s.log.Info("external address discovered: the relay address is public, advertised as is", "relay_ip", ip.String(), "stun_server", server)
			continue
		}
		if ext.ByRelay == nil {
			ext.ByRelay = make(map[netip.Addr]netip.Addr)
		}
		ext.ByRelay[ip] = public
		s.log.Info("external address discovered", "relay_ip", ip.String(), "external_ip", public.String(), "stun_server", server)
	}
	s.cfg.ExternalIP = ext
	return nil
}

// relayIPs returns the distinct addresses relay sockets bind on, of each
// listener's choice (see relayIPFor), in the listeners' order, IPv4 first.
func (s *Server) relayIPs() []netip.Addr {
	var ips []netip.Addr
	for _, spec := range s.cfg.Listeners {
		for _, ip := range s.relayIPFor(spec).list() {
			if !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
	}
	return ips
}

// RelayAddress is an address relay sockets bind on and the address
// advertised for it in XOR-RELAYED-ADDRESS (the same unless behind NAT).
type RelayAddress struct {
	Relay, Advertised netip.Addr
}

// RelayAddresses returns the addresses relay sockets bind on and what is
// advertised for each, with discovered external addresses. Call it after
// Start.
func (s *Server) RelayAddresses() []RelayAddress {
	var out []RelayAddress
	for _, ip := range s.relayIPs() {
		adv := s.cfg.ExternalIP.Public(ip)
		if !adv.IsValid() {
			adv = ip
		}
		out = append(out, RelayAddress{Relay: ip, Advertised: adv})
	}
	return out
}
