package relay_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// sendIndication sends data to peer through c's allocation, in a Send
// indication with the extra attributes.
func (c *rawClient) sendIndication(peer netip.AddrPort, data string, extra ...stun.Setter) {
	c.t.Helper()
	m := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		stunPeer(peer), proto.Data(data)}, extra...)...)
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
}

// readDataIndication returns the next Data indication's peer and DATA, or
// ok false when none arrives within wait.
func (c *rawClient) readDataIndication(wait time.Duration) (from netip.AddrPort, data []byte, ok bool) {
	c.t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		n, err := c.conn.Read(buf)
		if err != nil {
			return netip.AddrPort{}, nil, false
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			continue
		}
		from, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
		if err != nil {
			c.t.Fatalf("Data indication without XOR-PEER-ADDRESS: %v", err)
		}
		var d proto.Data
		if err := d.GetFrom(m); err != nil {
			c.t.Fatalf("Data indication without DATA: %v", err)
		}
		return from, d, true
	}
}

// TestSelfRelayRefused: a client cannot aim its relay at the server's own
// listener, even with loopback allowed by the policy (as in every test): a
// Send indication carrying a Binding request to the listener port is
// dropped and counted instead of coming back as a Data indication holding
// the listener's answer, and CreatePermission and ChannelBind naming the
// listener's port, or a port of the server's address outside the relay
// range, get 403.
func TestSelfRelayRefused(t *testing.T) {
	s := startServer(t)
	listener := netip.MustParseAddrPort(s.addrs[relay.UDP])
	c := newRawClient(t, s.addrs[relay.UDP])
	relayed := c.allocate()

	// A permission for the server's address is legitimate (relay to
	// relay) and made through a relay port: the client's own relayed
	// address will do.
	wantCode(t, "CreatePermission to a relay port of the server's address", c.authed(stun.MethodCreatePermission, stunPeer(relayed)), 0)
	binding := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	for range 3 {
		c.sendIndication(listener, string(binding.Raw))
	}
	if from, data, ok := c.readDataIndication(500 * time.Millisecond); ok {
		t.Fatalf("a Send indication to the server's own listener %v came back: %d bytes from %v", listener, len(data), from)
	}
	if d := s.Stats().Drops[relay.DropOwnAddress.String()]; d != 3 {
		t.Errorf("own_address drops = %d, want 3", d)
	}

	for i, peer := range []netip.AddrPort{
		listener,                               // the listener itself
		netip.AddrPortFrom(listener.Addr(), 9), // another UDP service of the host, outside the relay range
		netip.MustParseAddrPort(s.addrs[relay.TCP]),
	} {
		wantCode(t, "CreatePermission to "+peer.String(), c.authed(stun.MethodCreatePermission, stunPeer(peer)), stun.CodeForbidden)
		wantCode(t, "ChannelBind to "+peer.String(), c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000+i), stunPeer(peer)), stun.CodeForbidden)
	}
}

// TestSelfRelayUnspecified: 0.0.0.0 reaches the local host, so a policy
// that allows it still does not open the listener through it.
func TestSelfRelayUnspecified(t *testing.T) {
	s := startServer(t, withPolicy(auth.NewPeerPolicy([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/8"),
	}, nil)))
	listener := netip.MustParseAddrPort(s.addrs[relay.UDP])
	c := newRawClient(t, s.addrs[relay.UDP])
	c.allocate()
	peer := netip.AddrPortFrom(netip.IPv4Unspecified(), listener.Port())
	wantCode(t, "CreatePermission to "+peer.String(), c.authed(stun.MethodCreatePermission, stunPeer(peer)), stun.CodeForbidden)
	wantCode(t, "ChannelBind to "+peer.String(), c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), stunPeer(peer)), stun.CodeForbidden)
}

// TestRelayToRelay: two allocations of one server reach each other
// through the server's own address (both WebRTC peers behind the relay),
// with Send/Data indications and over a channel, whatever the relay range.
func TestRelayToRelay(t *testing.T) {
	s := startServer(t, func(c *relay.Config) {
		c.RelayPorts = allocations.PortRange{} // the default range, 49152-65535
	})
	a, b := newRawClient(t, s.addrs[relay.UDP]), newRawClient(t, s.addrs[relay.UDP])
	relayA, relayB := a.allocate(), b.allocate()
	wantCode(t, "A permits B", a.authed(stun.MethodCreatePermission, stunPeer(relayB)), 0)
	wantCode(t, "B permits A", b.authed(stun.MethodCreatePermission, stunPeer(relayA)), 0)

	a.sendIndication(relayB, "hello B")
	from, data, ok := b.readDataIndication(2 * time.Second)
	if !ok || from != relayA || string(data) != "hello B" {
		t.Fatalf("B got %q from %v (ok %v), want \"hello B\" from %v", data, from, ok, relayA)
	}
	b.sendIndication(relayA, "hello A")
	from, data, ok = a.readDataIndication(2 * time.Second)
	if !ok || from != relayB || string(data) != "hello A" {
		t.Fatalf("A got %q from %v (ok %v), want \"hello A\" from %v", data, from, ok, relayB)
	}

	wantCode(t, "A binds a channel to B", a.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(relayB)), 0)
	cd := make([]byte, 4+4)
	copy(cd[4:], "ping")
	proto.PutChannelDataHeader(cd, 0x4001, 4)
	if _, err := a.conn.Write(cd); err != nil {
		t.Fatal(err)
	}
	if from, data, ok = b.readDataIndication(2 * time.Second); !ok || from != relayA || string(data) != "ping" {
		t.Fatalf("B got %q from %v (ok %v) over A's channel, want \"ping\" from %v", data, from, ok, relayA)
	}
	if d := s.Stats().Drops[relay.DropOwnAddress.String()]; d != 0 {
		t.Errorf("own_address drops = %d, want 0", d)
	}
}
