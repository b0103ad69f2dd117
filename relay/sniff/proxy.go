package sniff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
// Only trusted sources (relay's Config.ProxyProtocolFrom) may send a header: from anyone
// else a header would let a client pose as any address, so such a
// connection is closed. A trusted source may also connect without a header
// (a balancer's health check, say) and is then taken as the client.

// ErrUntrustedProxyHeader is a PROXY header from a source not trusted to
// send one.
var ErrUntrustedProxyHeader = errors.New("PROXY protocol header from a source not in proxy_protocol_from")

// HasProxySignature reports whether br starts with a PROXY protocol v1 or
// v2 signature. It peeks only as far as needed to tell, so the first byte
// of a STUN or TLS client costs no wait; the caller bounds the wait with a
// read deadline. A stream that ends (or times out) first has none.
func HasProxySignature(br *bufio.Reader) bool {
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

// ProxyClient returns the client address of a connection, reading a PROXY
// protocol header from br when the connection comes from a source in
// trusted. remote is the connection's own peer address.
func ProxyClient(br *bufio.Reader, remote netip.AddrPort, trusted []netip.Prefix) (netip.AddrPort, error) {
	if !slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(remote.Addr()) }) {
		if HasProxySignature(br) {
			return netip.AddrPort{}, fmt.Errorf("%w: add the load balancer's range to proxy_protocol_from (--proxy-protocol-from), or stop it sending PROXY headers", ErrUntrustedProxyHeader)
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
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
