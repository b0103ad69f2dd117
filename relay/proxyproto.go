package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/pires/go-proxyproto"
)

// PROXY protocol (HAProxy's, v1 text and v2 binary) on TCP and TLS
// listeners. Behind an L4 load balancer every connection comes from the
// balancer; the header it prepends names the real client, which then
// becomes the client of the 5-tuple: XOR-MAPPED-ADDRESS, nonces, per-IP
// quotas and rate limits, and logs all use it.
//
// Only sources in Config.ProxyProtocolFrom may send a header: from anyone
// else a header would let a client pose as any address, so such a
// connection is closed. A trusted source may also connect without a header
// (a balancer's health check, say) and is then taken as the client.

var errUntrustedProxyHeader = errors.New("PROXY protocol header from a source not in proxy_protocol_from")

// hasProxySignature reports whether br starts with a PROXY protocol v1 or
// v2 signature. It peeks only as far as needed to tell, so the first byte
// of a STUN or TLS client costs no wait; the caller bounds the wait with a
// read deadline. A stream that ends (or times out) first has none.
func hasProxySignature(br *bufio.Reader) bool {
	first, err := br.Peek(1)
	if err != nil {
		return false
	}
	var sig []byte
	switch first[0] {
	case proxyproto.SIGV1[0]:
		sig = proxyproto.SIGV1
	case proxyproto.SIGV2[0]:
		sig = proxyproto.SIGV2
	default:
		return false
	}
	b, err := br.Peek(len(sig))
	return err == nil && bytes.Equal(b, sig)
}

// proxyClient returns the client address of connection c, reading a PROXY
// protocol header from br when c comes from a trusted source. remote is c's
// own peer address.
func (s *Server) proxyClient(br *bufio.Reader, remote netip.AddrPort) (netip.AddrPort, error) {
	trusted := slices.ContainsFunc(s.cfg.ProxyProtocolFrom, func(p netip.Prefix) bool { return p.Contains(remote.Addr()) })
	if !trusted {
		if hasProxySignature(br) {
			return netip.AddrPort{}, fmt.Errorf("%w: add the load balancer's range to proxy_protocol_from (--proxy-protocol-from), or stop it sending PROXY headers", errUntrustedProxyHeader)
		}
		return remote, nil
	}
	h, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return remote, nil
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("PROXY protocol header: %w", err)
	}
	// LOCAL (v2) and UNKNOWN (v1) headers are the balancer speaking for
	// itself, e.g. a health check: the connection is its own.
	if h.Command != proxyproto.PROXY {
		return remote, nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("PROXY protocol header: transport %v is not TCP over IPv4 or IPv6", h.TransportProtocol)
	}
	ap := src.AddrPort()
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, errors.New("PROXY protocol header: invalid source address")
	}
	return unmapAddrPort(ap), nil
}

// tcpAddrPort is the address of a TCP connection endpoint (IPv4-mapped
// IPv6 unmapped).
func tcpAddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return unmapAddrPort(t.AddrPort())
	}
	return netip.AddrPort{}
}
