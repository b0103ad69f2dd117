package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
)

// ListenerKind is the transport a listener speaks to clients.
type ListenerKind uint8

// Listener kinds. TCPTLS serves plain TURN/TCP and TURN/TLS on one port, told
// apart by the first byte of each connection (0x16 starts a TLS handshake).
const (
	UDP ListenerKind = iota + 1
	TCP
	TLS
	TCPTLS
)

var kindSchemes = [...]string{UDP: "udp", TCP: "tcp", TLS: "tls", TCPTLS: "tcp+tls"}

// String returns the URL scheme of the kind ("udp", "tcp", "tls", "tcp+tls").
func (k ListenerKind) String() string {
	if int(k) < len(kindSchemes) && kindSchemes[k] != "" {
		return kindSchemes[k]
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// transports are the client transports a listener of kind k carries.
func (k ListenerKind) transports() []allocations.Transport {
	switch k {
	case UDP:
		return []allocations.Transport{allocations.UDP}
	case TCP:
		return []allocations.Transport{allocations.TCP}
	case TLS:
		return []allocations.Transport{allocations.TLS}
	case TCPTLS:
		return []allocations.Transport{allocations.TCP, allocations.TLS}
	}
	return nil
}

// ListenSpec names one listener: its kind and the host:port it binds.
type ListenSpec struct {
	Kind ListenerKind
	Addr string // host:port; an empty host means every address
}

// String returns the spec in the form ParseListenSpec accepts.
func (s ListenSpec) String() string { return s.Kind.String() + "://" + s.Addr }

// ParseListenSpec parses "udp://HOST:PORT", "tcp://HOST:PORT", "tls://HOST:PORT"
// or "tcp+tls://HOST:PORT". HOST may be empty (all addresses), an IPv4
// address, or a bracketed IPv6 address.
func ParseListenSpec(s string) (ListenSpec, error) {
	scheme, addr, ok := strings.Cut(s, "://")
	if !ok {
		return ListenSpec{}, fmt.Errorf("listener %q: want SCHEME://HOST:PORT with SCHEME udp, tcp, tls or tcp+tls", s)
	}
	var kind ListenerKind
	for k, name := range kindSchemes {
		if name != "" && strings.EqualFold(scheme, name) {
			kind = ListenerKind(k)
		}
	}
	if kind == 0 {
		return ListenSpec{}, fmt.Errorf("listener %q: unknown scheme %q: use udp, tcp, tls or tcp+tls", s, scheme)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ListenSpec{}, fmt.Errorf("listener %q: %w (IPv6 hosts go in brackets: tcp://[::1]:3478)", s, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return ListenSpec{}, fmt.Errorf("listener %q: host %q is not an IP address (listeners bind addresses, not names)", s, host)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return ListenSpec{}, fmt.Errorf("listener %q: port %q is not a number from 0 to 65535", s, port)
	}
	return ListenSpec{Kind: kind, Addr: net.JoinHostPort(host, strconv.FormatUint(p, 10))}, nil
}

// DefaultListeners are the listeners used when none is configured: the RFC
// ports for every transport, and port 443 for clients behind firewalls that
// let only 443 out (UDP, and TCP carrying either plain TURN or TURN/TLS).
func DefaultListeners() []ListenSpec {
	return []ListenSpec{
		{UDP, ":3478"},
		{TCP, ":3478"},
		{TLS, ":5349"},
		{UDP, ":443"},
		{TCPTLS, ":443"},
	}
}

// Lifetimes from RFC 8656.
const (
	// DefaultAllocationLifetime is the lifetime of an allocation whose
	// request asks for less (RFC 8656 §3.9: 10 minutes).
	DefaultAllocationLifetime = 10 * time.Minute
	// DefaultMaxLifetime caps the lifetime a client may ask for.
	DefaultMaxLifetime = time.Hour
	// DefaultHandshakeTimeout bounds the wait for a TCP/TLS client's first
	// byte, PROXY header and TLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultIdleTimeout closes TCP/TLS connections without an allocation.
	DefaultIdleTimeout = 30 * time.Second
)

// Defaults of the per-source UDP answer limits, applied by package config (a
// zero Config means no limit). One source is an IPv4 address or an IPv6
// /64, and may be a NAT in front of a whole office, so they are sized for
// one:
//
// Unauthenticated answers. Every RTCPeerConnection sends one
// unauthenticated Allocate per TURN URL and gets a 401 (RFC 8489 §9.2.4).
// Of the six TURN URLs in the default iceServers JSON two are UDP, and only
// UDP answers are limited; a browser joining a call with two
// PeerConnections (an SFU's send and receive) costs 2 × 2 = 4 answers.
// Design case: 10 000 users behind one NAT address joining a 09:00 meeting
// within two minutes: 10 000 × 4 / 120 s = 333 answers/s, so 500/s leaves
// half again for the peak, and the burst of 1 000 is the 250 users who
// click in the same second. (Over that, a UDP 401 is dropped and the client
// retransmits it: a delay, not a failure.)
// Reflection bound: at most 1 000 + 500·t answers to one victim source in
// t seconds, each at most 4.6× its request (128 bytes with a 12-character
// realm; minChallengedRequest): 64 KB/s (0.5 Mbit/s) sustained, 128 KB at
// once.
//
// Binding answers. A client sends a Binding per stun: URL on each
// interface as it gathers (two stun: URLs in the default iceServers, so 4
// with two PeerConnections), then, where this server is one end of a
// candidate pair it keeps alive, one about every 5 s per pair (RFC 7675
// §5.1: consent is refreshed every 5 s on average, "randomized to be
// between 0.8 and 1.2 times the basic period"). Design case: 2 000 users in
// calls behind one address with 4 such pairs each: 2 000 × 4 / 5 s = 1 600
// Bindings/s, so 2 000/s; the burst of 4 000 is 1 000 users gathering in
// the same second. Reflection bound: at most 4 000 + 2 000·t answers of 40
// bytes (IPv4; 52 for IPv6) for 20-byte requests, 2.6× at most: 80 KB/s
// (104 KB/s over IPv6) sustained per victim source, 160 KB at once.
const (
	DefaultUnauthenticatedRate  = 500
	DefaultUnauthenticatedBurst = 1000
	DefaultBindingRate          = 2000
	DefaultBindingBurst         = 4000
)

// Config is everything a Server needs. Zero values take the documented
// defaults; Auth and Policy are required.
type Config struct {
	// Listeners to bind; DefaultListeners() when empty.
	Listeners []ListenSpec
	// ListenersExplicit is true when the operator named the listeners: a
	// listener that cannot bind is then fatal. Otherwise such a listener is
	// logged with the remedy and skipped.
	ListenersExplicit bool
	// IO is how relay sockets are read: IOEpoll (""), IOAuto or IOUring
	// (io.go).
	IO string
	// KernelPath is KernelPathOff (""), KernelPathTC or KernelPathAuto:
	// bound channels of UDP allocations relayed in the kernel
	// (kernelpath.go).
	KernelPath string
	// KernelPathInterfaces are the interfaces the kernel path attaches to;
	// empty: every interface that is up, and those that come up later.
	KernelPathInterfaces []string

	// Auth checks long-term and REST-API credentials and issues nonces.
	Auth *auth.Authenticator
	// Policy decides which peer addresses may be relayed to.
	Policy *auth.PeerPolicy

	// RelayIP and RelayIPs are the addresses relay sockets bind on: at most
	// one of each family (New refuses two of one family), RelayIP being
	// the single-address form. When none is valid they are chosen per
	// listener (see relayIPFor): a specific listener address for its own
	// family (with the loopback address of the other family when it is
	// loopback), and otherwise the host's primary address of each family
	// (the source address of its default route; for IPv6 a global or ULA
	// address, see PrimaryIP6). A family with no relay address is not
	// offered: an Allocate for it gets 440 (RFC 8656 §7.2).
	RelayIP  netip.Addr
	RelayIPs []netip.Addr
	// DefaultFamily is the family of the relayed address an Allocate
	// without REQUESTED-ADDRESS-FAMILY gets; FamilyIPv4 (the zero value)
	// is what RFC 8656 §7.2 asks for.
	DefaultFamily Family
	// ExternalIP maps relay addresses to the public addresses advertised
	// in XOR-RELAYED-ADDRESS instead of the relay socket's own (the host is
	// behind 1:1 NAT); a relay address it does not map is advertised as is.
	ExternalIP ExternalIPs
	// DiscoverExternalIP, when non-empty, lists STUN servers (host:port)
	// that Start asks, with a Binding request sent from each relay address
	// ExternalIP does not map, for that address's public address (see
	// DiscoverPublicIP).
	DiscoverExternalIP []string
	// RelayPorts is the range relay sockets bind in; 49152-65535 when zero.
	RelayPorts allocations.PortRange

	// UserQuota is the maximum number of allocations per user across every
	// listener; 0 means unlimited. IPQuota is the same per client IP
	// address, and TotalQuota for the whole server (508 when reached).
	UserQuota, IPQuota, TotalQuota int

	// AllocationBandwidth and UserBandwidth cap relayed bytes per second in
	// each direction, per allocation and per user (all of the user's
	// allocations together); 0 means unlimited. Excess is dropped.
	AllocationBandwidth, UserBandwidth int64

	// UnauthenticatedRate limits, per UDP client source (an IPv4 address
	// or an IPv6 /64), the answers to requests that have not authenticated
	// (401, 438, 400, 420), in answers per second with UnauthenticatedBurst;
	// 0 means unlimited (see DefaultUnauthenticatedRate). Such answers cost
	// an HMAC and bandwidth toward a possibly spoofed address. A 438 to a
	// request whose MESSAGE-INTEGRITY verifies is not limited, nor is any
	// answer over TCP or TLS.
	UnauthenticatedRate  float64
	UnauthenticatedBurst int
	// BindingRate and BindingBurst limit Binding answers over UDP per
	// client source in the same way, with a budget of their own; 0 means
	// unlimited (see DefaultBindingRate).
	BindingRate  float64
	BindingBurst int
	// DefaultLifetime is the lifetime of allocations that ask for less
	// (600 s when zero); MaxLifetime caps what they may ask for (3600 s).
	DefaultLifetime, MaxLifetime time.Duration

	// HandshakeTimeout bounds a TCP/TLS client's first byte, PROXY header
	// and TLS handshake (DefaultHandshakeTimeout when zero), so slow-loris
	// connections cannot pile up. IdleTimeout closes a TCP/TLS connection
	// without an allocation for that long (DefaultIdleTimeout when zero):
	// one that never allocated, or whose allocation a Refresh with
	// lifetime 0 deleted.
	HandshakeTimeout, IdleTimeout time.Duration
	// MaxConns caps live TCP/TLS connections in total, MaxConnsPerIP per
	// source address (PROXY-protocol load balancers exempt); 0 means no cap.
	MaxConns, MaxConnsPerIP int

	// AlternateServer, when valid, is sent to clients that try to allocate
	// while the server is draining (300 Try Alternate with
	// ALTERNATE-SERVER); otherwise they get 508.
	AlternateServer netip.AddrPort

	// Fleet, when set, counts allocations against fleet-wide quotas and
	// names another node for 300 Try Alternate when this one is draining
	// (and AlternateServer is not set) or full (see Fleet); nil: this
	// relay is on its own.
	Fleet Fleet

	// TLSCert is served on TLS listeners; nil generates a self-signed
	// certificate in memory (and logs a warning).
	TLSCert *tls.Certificate
	// ACME, when set, obtains and renews the TLS certificate automatically
	// (see ACMEConfig); TLSCert, or a self-signed certificate, is served
	// only until the first one arrives.
	ACME *ACMEConfig

	// Web shares the TLS listeners (port 443) with a web site: see
	// WebConfig and the routing rules in the package documentation.
	Web WebConfig
	// QUIC shares the UDP listeners with a QUIC (HTTP/3) server: see
	// QUICConfig and the package documentation.
	QUIC QUICConfig
	// ProxyProtocolFrom lists the sources (L4 load balancers) trusted to
	// start TCP and TLS connections with a PROXY protocol v1 or v2 header
	// naming the real client. A header from any other source closes the
	// connection.
	ProxyProtocolFrom []netip.Prefix

	// Software is sent in the SOFTWARE attribute of every response to an
	// authenticated request (never to a stranger: see request.send).
	Software string
	// Logger receives the server's logs; slog.Default() when nil.
	Logger *slog.Logger

	// Usage, when set, receives a usage record at the end of every
	// allocation and, every UsageInterval (none when zero), an interim
	// record of each long one (usage.go). nil costs nothing. Records are
	// made on the control plane, never per packet, and Record must not
	// block (package usage queues them).
	Usage UsageSink
	// UsageInterval is the period of interim usage records; zero: final
	// records only.
	UsageInterval time.Duration

	// tcpBindTimeout replaces RFC 6062's 30 s ConnectionBind timeout in
	// tests (export_test.go); zero in every other use.
	tcpBindTimeout time.Duration
}

// Family is the address family of relayed addresses that an Allocate
// without REQUESTED-ADDRESS-FAMILY gets (Config.DefaultFamily; coturn's
// allocation-default-address-family).
type Family uint8

// Families. RFC 8656 §7.2: "If the REQUESTED-ADDRESS-FAMILY attribute is
// absent and the server supports the IPv4 address family, the server MUST
// allocate an IPv4 relayed transport address for the TURN client", hence
// FamilyIPv4 is the zero value. FamilyKeep gives the family of the
// client's own transport address (what many IPv6-only clients want, and
// what the RFC does not ask for).
const (
	FamilyIPv4 Family = iota
	FamilyIPv6
	FamilyKeep
)

var familyNames = [...]string{FamilyIPv4: "ipv4", FamilyIPv6: "ipv6", FamilyKeep: "keep"}

// String returns "ipv4", "ipv6" or "keep".
func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// ParseFamily parses "ipv4", "ipv6" or "keep" (any case).
func ParseFamily(s string) (Family, error) {
	for f, name := range familyNames {
		if strings.EqualFold(s, name) {
			return Family(f), nil
		}
	}
	return 0, fmt.Errorf("address family %q: want ipv4, ipv6 or keep", s)
}

// relayIPs are the addresses relay sockets bind on for one listener's
// allocations, one per family; an invalid one is a family not offered.
type relayIPs struct {
	v4, v6 netip.Addr
}

// of returns the relay address of the IPv6 family when v6, else IPv4's.
func (r relayIPs) of(v6 bool) netip.Addr {
	if v6 {
		return r.v6
	}
	return r.v4
}

// valid reports whether any family is offered.
func (r relayIPs) valid() bool { return r.v4.IsValid() || r.v6.IsValid() }

// list returns the valid addresses, IPv4 first.
func (r relayIPs) list() []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{r.v4, r.v6} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

// configuredRelayIPs sorts Config.RelayIP and RelayIPs by family,
// refusing two addresses of one family and addresses no socket binds on.
func configuredRelayIPs(cfg *Config) (relayIPs, error) {
	var r relayIPs
	for _, ip := range append([]netip.Addr{cfg.RelayIP}, cfg.RelayIPs...) {
		if !ip.IsValid() {
			continue
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() || ip.IsMulticast() {
			return relayIPs{}, fmt.Errorf("relay: relay address %v: want a unicast address of this host", ip)
		}
		slot := &r.v4
		if ip.Is6() {
			slot = &r.v6
		}
		if slot.IsValid() && *slot != ip {
			return relayIPs{}, fmt.Errorf("relay: relay addresses %v and %v: give at most one address of each family", *slot, ip)
		}
		*slot = ip
	}
	return r, nil
}
