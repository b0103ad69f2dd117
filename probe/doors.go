package probe

import (
	"fmt"
	"net"
	"strconv"
)

// Transports a Door is tried over: the "transport" member of a Result.
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls" // TCP with TLS: the turns: scheme
)

// The ports Doors is usually given: those of RFC 7065 §3 ("the default port
// for TURN ... is 3478 ... for TURN over TLS is 5349") and 443, the port
// firewalls let out for HTTPS.
const (
	DefaultTURNPort  = 3478
	DefaultTURNSPort = 5349
	DefaultAltPort   = 443
)

// Door is one way into a TURN server: a transport and a port, with the
// words a person reads about it.
type Door struct {
	// Name is what the door is called in prose, e.g. "UDP 3478".
	Name string `json:"name"`
	// Scheme is the URI scheme of RFC 7065: turn, or turns for TLS.
	Scheme string `json:"scheme"`
	// Transport is UDP, TCP or TLS.
	Transport string `json:"transport"`
	Port      int    `json:"port"`
	// Why says in one phrase what the door is for.
	Why string `json:"why"`
}

// Doors returns the six doors tried, in the order they are reported: TURN
// over UDP and TCP on turnPort, TLS on turnsPort, then UDP, TCP and TLS on
// altPort. The cheapest come first, the likeliest to pass a firewall last.
func Doors(turnPort, turnsPort, altPort int) []Door {
	door := func(transport string, port int, why string) Door {
		return Door{Name: transportName(transport) + " " + strconv.Itoa(port), Scheme: scheme(transport), Transport: transport, Port: port, Why: why}
	}
	return []Door{
		door(UDP, turnPort, "TURN over UDP on its own port: the fastest, where UDP is let out"),
		door(TCP, turnPort, "TURN over TCP on its own port, for networks that drop UDP"),
		door(TLS, turnsPort, "TURN over TLS on the turns: port"),
		door(UDP, altPort, "UDP on the HTTPS port, which some firewalls let out for QUIC"),
		door(TCP, altPort, "TCP on the HTTPS port, which most firewalls let out"),
		door(TLS, altPort, "TLS on the HTTPS port: looks like HTTPS, so it passes the strictest firewalls and proxies"),
	}
}

// scheme is the URI scheme of a transport (RFC 7065 §3).
func scheme(transport string) string {
	if transport == TLS {
		return "turns"
	}
	return "turn"
}

// transportName is how a transport is written in prose.
func transportName(transport string) string {
	switch transport {
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	}
	return "TLS"
}

// Check reports whether d can be dialled at all.
func (d Door) Check() error {
	if d.Port <= 0 || d.Port > 65535 {
		return fmt.Errorf("port %d: write a port from 1 to 65535", d.Port)
	}
	switch d.Transport {
	case UDP, TCP, TLS:
		return nil
	}
	return fmt.Errorf("transport %q: want udp, tcp or tls", d.Transport)
}

// URL is the ICE URL of d on host (RFC 7065 §3): turn:HOST:PORT?transport=udp
// or tcp, turns:HOST:PORT?transport=tcp for TLS. An IPv6 host is bracketed.
// The scheme follows from the transport, so a Door built by hand without
// Scheme still gets the right URL.
func (d Door) URL(host string) string {
	hp := net.JoinHostPort(host, strconv.Itoa(d.Port))
	if d.Transport == UDP {
		return "turn:" + hp + "?transport=udp"
	}
	return scheme(d.Transport) + ":" + hp + "?transport=tcp"
}

// STUNURL is the stun: URL of a UDP door on host (RFC 7064 §3).
func (d Door) STUNURL(host string) string {
	return "stun:" + net.JoinHostPort(host, strconv.Itoa(d.Port))
}
