package stunclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay/proto"
)

// discoverTimeout bounds the wait for one STUN server; the request is
// retransmitted within it (RFC 8489 §6.2.1 doubles the interval).
const (
	discoverTimeout = 2 * time.Second
	discoverRTO     = 250 * time.Millisecond
)

// PublicIP finds the public address of the host address local by
// sending a STUN Binding request (RFC 8489 §7) from a socket bound on local
// to each server (host:port) in turn, and returns the first
// XOR-MAPPED-ADDRESS answered, with the server that answered. Each server
// gets up to 2 s, with retransmissions; ctx bounds the whole search. Only
// servers of local's family are asked (a host name resolves to that family).
func PublicIP(ctx context.Context, local netip.Addr, servers []string) (netip.Addr, string, error) {
	if len(servers) == 0 {
		return netip.Addr{}, "", errors.New("discover public address: no STUN server configured")
	}
	local = local.Unmap()
	var errs []error
	for _, server := range servers {
		ip, err := Query(ctx, local, server)
		if err == nil {
			return ip, server, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if ctx.Err() != nil {
			break
		}
	}
	return netip.Addr{}, "", fmt.Errorf("discover public address of %v: %w", local, errors.Join(errs...))
}

// Query asks one STUN server (host:port) for local's public address, from
// a socket of its own bound on local: a Binding request, retransmitted
// with a doubling interval from 250 ms, for up to 2 s or until ctx is done.
// Only the server's answer counts: datagrams from elsewhere, and answers to
// other transactions, are ignored.
func Query(ctx context.Context, local netip.Addr, server string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	local = local.Unmap()
	network, family := "udp4", "ip4"
	if local.Is6() {
		network, family = "udp6", "ip6"
	}
	host, portText, err := net.SplitHostPort(server)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("write HOST:PORT, e.g. stun.example.org:3478: %w", err)
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", portText)
	if err != nil {
		return netip.Addr{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, family, host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("no %s address", family)
	}
	to := netip.AddrPortFrom(ips[0].Unmap(), uint16(port))

	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1500)
	rto := discoverRTO
	for ctx.Err() == nil {
		if _, err := conn.WriteToUDPAddrPort(req.Raw, to); err != nil {
			return netip.Addr{}, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(rto))
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // timeout: retransmit (or ctx is done)
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != to {
				continue
			}
			resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if resp.Decode() != nil || resp.TransactionID != req.TransactionID {
				continue
			}
			if resp.Type != stun.BindingSuccess {
				return netip.Addr{}, fmt.Errorf("answered %v", resp.Type)
			}
			mapped, err := proto.GetXORAddress(resp, stun.AttrXORMappedAddress)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("answer without XOR-MAPPED-ADDRESS: %w", err)
			}
			return mapped.Addr().Unmap(), nil
		}
		rto *= 2
	}
	return netip.Addr{}, fmt.Errorf("no answer: %w", context.Cause(ctx))
}
