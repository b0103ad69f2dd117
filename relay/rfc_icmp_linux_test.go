package relay_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// withIPv6Only makes the server listen and relay on ::1 only.
func withIPv6Only(c *relay.Config) {
	c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: "[::1]:0"}}
	c.RelayIP = netip.MustParseAddr("::1")
	c.DefaultFamily = relay.FamilyKeep // an IPv6-only server answers 440 to an Allocate without a family otherwise
	c.Policy = auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("::1/128")}, nil)
}

// freeUDPPort returns an address on ip where nothing listens.
func freeUDPPort(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Skipf("no UDP on %s: %v", ip, err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = c.Close()
	return ap
}

// readICMPIndication reads the client's next message, which must be a Data
// indication with XOR-PEER-ADDRESS and ICMP and no DATA (RFC 8656 §11.5).
func (c *rawClient) readICMPIndication() (proto.ICMP, netip.AddrPort) {
	c.t.Helper()
	m := &stun.Message{Raw: c.read()}
	if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		c.t.Fatalf("got %v (%v), want a Data indication", m.Type, err)
	}
	var icmp proto.ICMP
	if err := icmp.GetFrom(m); err != nil {
		c.t.Fatalf("Data indication without ICMP: %v", err)
	}
	if m.Contains(stun.AttrData) {
		c.t.Fatal("ICMP Data indication carries DATA")
	}
	peer, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
	if err != nil {
		c.t.Fatalf("ICMP Data indication without XOR-PEER-ADDRESS: %v", err)
	}
	return icmp, peer
}

// TestICMPPortUnreachable: a datagram relayed to a closed port comes back
// to the client as a Data indication with ICMP type 3 code 3 (ICMPv4) or
// type 1 code 4 (ICMPv6) and the peer's address and port (RFC 8656 §11.5),
// for a peer with a channel too: ChannelData has no room for it.
func TestICMPPortUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name, ip string
		opts     []serverOption
		want     proto.ICMP
	}{
		{"ipv4", "127.0.0.1", nil, proto.ICMP{Type: 3, Code: 3}},
		{"ipv6", "::1", []serverOption{withIPv6Only}, proto.ICMP{Type: 1, Code: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed := freeUDPPort(t, tc.ip)
			s := startServer(t, tc.opts...)
			c := newRawClient(t, s.addrs[relay.UDP])
			c.allocate()
			wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(closed)), 0)
			c.sendIndication(closed, "anyone there?")
			if icmp, peer := c.readICMPIndication(); icmp != tc.want || peer != closed {
				t.Fatalf("ICMP %+v about %v, want %+v about %v", icmp, peer, tc.want, closed)
			}

			// Over a channel.
			closed2 := freeUDPPort(t, tc.ip)
			wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(closed2)), 0)
			cd := make([]byte, 4+4)
			proto.PutChannelDataHeader(cd, 0x4001, 4)
			if _, err := c.conn.Write(cd); err != nil {
				t.Fatal(err)
			}
			if icmp, peer := c.readICMPIndication(); icmp != tc.want || peer != closed2 {
				t.Fatalf("over a channel: ICMP %+v about %v, want %+v about %v", icmp, peer, tc.want, closed2)
			}
		})
	}
}

// relaySocketOpt reads an integer socket option of the relay socket of the
// allocation at relayed.
func relaySocketOpt(t *testing.T, s *testServer, relayed netip.AddrPort, level, opt int) int {
	t.Helper()
	a := s.Table().ByRelayed(relayed)
	if a == nil {
		t.Fatalf("no allocation at %v", relayed)
	}
	var v int
	var serr error
	if err := a.Raw.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v %v", err, serr)
	}
	return v
}

// TestDontFragment: an Allocate with DONT-FRAGMENT gets a relay socket
// that sends with DF (RFC 8656 §7.2); one without does not, until a Send
// indication asks for DF (§11.2, see dontfrag.go). Loopback's 64 KiB MTU
// cannot show DF on the wire, so the socket options are read back.
func TestDontFragment(t *testing.T) {
	for _, tc := range []struct {
		name, ip   string
		opts       []serverOption
		level, opt int
		do         int
	}{
		{"ipv4", "127.0.0.1", nil, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO},
		{"ipv6", "::1", []serverOption{withIPv6Only}, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.opts...)
			df := newRawClient(t, s.addrs[relay.UDP])
			resp := df.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.DontFragment{})
			wantCode(t, "Allocate with DONT-FRAGMENT", resp, 0)
			relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
			if err != nil {
				t.Fatal(err)
			}
			if got := relaySocketOpt(t, s, relayed, tc.level, tc.opt); got != tc.do {
				t.Errorf("with DONT-FRAGMENT: MTU discovery %d, want %d (DO)", got, tc.do)
			}
			if tc.ip == "::1" {
				if got := relaySocketOpt(t, s, relayed, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG); got != 1 {
					t.Errorf("with DONT-FRAGMENT: IPV6_DONTFRAG %d, want 1", got)
				}
			}

			plain := newRawClient(t, s.addrs[relay.UDP])
			relayed = plain.allocate()
			if got := relaySocketOpt(t, s, relayed, tc.level, tc.opt); got == tc.do {
				t.Errorf("without DONT-FRAGMENT: MTU discovery %d (DO)", got)
			}
			// A Send indication with DONT-FRAGMENT: relayed, with DF.
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.ip), 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			wantCode(t, "CreatePermission", plain.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
			plain.sendIndication(peerAP, "df please", proto.DontFragment{})
			buf := make([]byte, 64)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err := peer.Read(buf); err != nil || string(buf[:n]) != "df please" {
				t.Fatalf("peer got %q, %v", buf[:n], err)
			}
			if got := relaySocketOpt(t, s, relayed, tc.level, tc.opt); got != tc.do {
				t.Errorf("after a Send indication with DONT-FRAGMENT: MTU discovery %d, want %d (DO)", got, tc.do)
			}
		})
	}
}
