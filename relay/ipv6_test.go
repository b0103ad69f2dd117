package relay_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// IPv6 and dual allocations (RFC 8656 §7.2 REQUESTED-ADDRESS-FAMILY and
// ADDITIONAL-ADDRESS-FAMILY, §8 Refresh per family), over ::1.

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.IPv6Loopback()
)

// loopbackPolicy6 allows loopback peers of both families: ::1 is denied by
// default like 127.0.0.1.
func loopbackPolicy6() *auth.PeerPolicy {
	return auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, nil)
}

// listenUDP6 opens a UDP socket on [::1], skipping the test where the host
// has no IPv6 loopback.
func listenUDP6(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// startServer6 starts a server with UDP, TCP and TLS listeners on [::1] and
// no relay address configured: a loopback listener relays on the loopback
// address of each family (::1 and 127.0.0.1).
func startServer6(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	listenUDP6(t) // skips without IPv6
	return startServer(t, append([]serverOption{withPolicy(loopbackPolicy6()), func(c *relay.Config) {
		c.Listeners = []relay.ListenSpec{
			{Kind: relay.UDP, Addr: "[::1]:0"},
			{Kind: relay.TCP, Addr: "[::1]:0"},
			{Kind: relay.TLS, Addr: "[::1]:0"},
		}
		c.RelayIP = netip.Addr{}
	}}, opts...)...)
}

// sourcePeer is a UDP peer that answers every datagram with the source
// address it came from, so the client learns which relay socket sent it.
func sourcePeer(t testing.TB, pc *net.UDPConn) netip.AddrPort {
	t.Helper()
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			_, _ = pc.WriteToUDPAddrPort([]byte(from.String()), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// framedConn reads a TCP stream one STUN or ChannelData frame at a time
// (padding dropped), so a rawClient can speak over TCP as over UDP.
type framedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *framedConn) Read(b []byte) (int, error) {
	hdr, err := c.r.Peek(proto.ChannelDataHeaderSize)
	if err != nil {
		return 0, err
	}
	n := proto.StreamFrameLen(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(c.r, frame); err != nil {
		return 0, err
	}
	if proto.Classify(hdr[0]) == proto.KindChannelData {
		frame = frame[:proto.ChannelDataHeaderSize+int(binary.BigEndian.Uint16(hdr[2:4]))]
	}
	return copy(b, frame), nil
}

// newRawClientOver returns a rawClient of the listener kind at addr: UDP,
// TCP (framed) or TLS (a record per message).
func newRawClientOver(t *testing.T, kind relay.ListenerKind, addr string) *rawClient {
	t.Helper()
	switch kind {
	case relay.UDP:
		return newRawClient(t, addr)
	case relay.TLS:
		return newRawTLSClient(t, addr)
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: &framedConn{Conn: c, r: bufio.NewReader(c)}, user: testUser, pass: testPassword}
}

// relayedAddrs returns every XOR-RELAYED-ADDRESS of m, in order.
func relayedAddrs(t *testing.T, m *stun.Message) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORRelayedAddress {
			continue
		}
		one := stun.New()
		one.TransactionID = m.TransactionID
		one.Add(a.Type, a.Value)
		ap, err := proto.GetXORAddress(one, stun.AttrXORRelayedAddress)
		if err != nil {
			t.Fatalf("XOR-RELAYED-ADDRESS: %v", err)
		}
		out = append(out, ap)
	}
	return out
}

// sendTo sends payload to peer in a Send indication.
func (c *rawClient) sendTo(peer netip.AddrPort, payload []byte) {
	c.t.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), stunPeer(peer), proto.Data(payload))
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
}

// readData reads the next Data indication and returns its peer and data.
func (c *rawClient) readData() (netip.AddrPort, []byte) {
	c.t.Helper()
	m := &stun.Message{Raw: c.read()}
	if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		c.t.Fatalf("want a Data indication, got %v (%v)", m.Type, err)
	}
	from, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
	if err != nil {
		c.t.Fatal(err)
	}
	var data proto.Data
	if err := data.GetFrom(m); err != nil {
		c.t.Fatal(err)
	}
	return from, append([]byte(nil), data...)
}

// TestIPv6OnlyClient: an IPv6-only client of a [::1] listener, pion's
// client (which sends REQUESTED-ADDRESS-FAMILY IPv6 from an IPv6 socket),
// gets an IPv6 relayed address and relays to a [::1] peer, over UDP, TCP
// and TLS.
func TestIPv6OnlyClient(t *testing.T) {
	s := startServer6(t)
	for _, tc := range []struct {
		name string
		kind relay.ListenerKind
		tls  bool
	}{{"udp", relay.UDP, false}, {"tcp", relay.TCP, false}, {"tls", relay.TLS, true}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := s.addrs[tc.kind]
			var conn net.PacketConn
			if tc.kind == relay.UDP {
				conn = listenUDP6(t)
			} else {
				conn = clientConn(t, tc.kind, addr, tc.tls)
			}
			client := newClient(t, conn, addr, testUser, testPassword)
			relayConn, err := client.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relayConn.Close()
			relayed, err := netip.ParseAddrPort(relayConn.LocalAddr().String())
			if err != nil || relayed.Addr() != loopback6 {
				t.Fatalf("relayed address %v, want [::1]:port", relayConn.LocalAddr())
			}
			peer := echoPeer6(t)
			roundTrip(t, relayConn, peer.LocalAddr(), 20)
			a := s.Table().ByRelayed(relayed)
			if a == nil || a.Dual() || a.Relayed != relayed {
				t.Fatalf("allocation of %v: %+v", relayed, a)
			}
		})
	}
}

// echoPeer6 is turntest.EchoPeer on [::1].
func echoPeer6(t testing.TB) *net.UDPConn {
	t.Helper()
	return turntest.Echo(listenUDP6(t))
}

// TestDualAllocation: one allocation with an IPv4 and an IPv6 relayed
// address (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2) relays to an IPv4 peer
// from its IPv4 socket and to an IPv6 peer from its IPv6 socket, by Send
// indications and by channels, and both sockets relay back to the client;
// over UDP, TCP and TLS. pion's client cannot ask for two families, so the
// messages are built by hand.
func TestDualAllocation(t *testing.T) {
	s := startServer6(t)
	peer4 := sourcePeer(t, turntest.ListenUDP(t))
	peer6 := sourcePeer(t, listenUDP6(t))
	for _, kind := range []relay.ListenerKind{relay.UDP, relay.TCP, relay.TLS} {
		t.Run(kind.String(), func(t *testing.T) {
			c := newRawClientOver(t, kind, s.addrs[kind])
			before := s.Table().UserCount(testUser)
			resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.AdditionalAddressFamily(proto.FamilyIPv6))
			wantCode(t, "dual Allocate", resp, 0)
			relayed := relayedAddrs(t, resp)
			if len(relayed) != 2 || relayed[0].Addr() != loopback4 || relayed[1].Addr() != loopback6 {
				t.Fatalf("relayed addresses %v, want 127.0.0.1:port and [::1]:port", relayed)
			}
			if resp.Contains(proto.AttrAddressErrorCode) {
				t.Error("a full dual allocation carries ADDRESS-ERROR-CODE")
			}
			a := s.Table().ByRelayed(relayed[1])
			if a == nil || s.Table().ByRelayed(relayed[0]) != a || !a.Dual() {
				t.Fatalf("both relayed addresses must index one dual allocation")
			}
			if n := s.Table().UserCount(testUser) - before; n != 1 {
				t.Errorf("a dual allocation counts %d against the quota, want 1", n)
			}
			wantCode(t, "CreatePermission for both families",
				c.authed(stun.MethodCreatePermission, stunPeer(peer4), stunPeer(peer6)), 0)

			// Send indications: each peer sees the relayed address of its
			// own family, and its answer comes back as a Data indication.
			for i, tc := range []struct{ peer, from netip.AddrPort }{{peer4, relayed[0]}, {peer6, relayed[1]}} {
				c.sendTo(tc.peer, []byte("hello"))
				from, data := c.readData()
				if from != tc.peer || string(data) != tc.from.String() {
					t.Errorf("Send %d: Data from %v saying %q, want from %v saying %v", i, from, data, tc.peer, tc.from)
				}
			}

			// Channels to both.
			for i, tc := range []struct {
				number     uint16
				peer, from netip.AddrPort
			}{{0x4001, peer4, relayed[0]}, {0x4002, peer6, relayed[1]}} {
				wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(tc.number), stunPeer(tc.peer)), 0)
				frame := make([]byte, proto.ChannelDataHeaderSize+8)
				copy(proto.PutChannelData(frame, tc.number, 5, kind != relay.UDP)[proto.ChannelDataHeaderSize:], "hello")
				if _, err := c.conn.Write(frame[:proto.StreamFrameLen(frame)]); err != nil {
					t.Fatal(err)
				}
				number, payload, err := proto.ParseChannelData(c.read())
				if err != nil || number != tc.number || string(payload) != tc.from.String() {
					t.Errorf("channel %d: got 0x%04x %q (%v), want 0x%04x %q", i, number, payload, err, tc.number, tc.from.String())
				}
			}
			// Deleted here, not by the stream's close at cleanup: that
			// removal is asynchronous and would land inside the next
			// subtest's quota count.
			wantCode(t, "Refresh LIFETIME 0", c.authed(stun.MethodRefresh, proto.Lifetime(0)), 0)
			if n := s.Table().UserCount(testUser) - before; n != 0 {
				t.Errorf("a deleted dual allocation still counts %d against the quota", n)
			}
		})
	}
}

// TestDualRefreshPerFamily: RFC 8656 §8.1, a Refresh with
// REQUESTED-ADDRESS-FAMILY refreshes, or with LIFETIME 0 deletes, that
// family's relayed address only; the other relays on. A family the
// allocation has not (or no longer) gets 443 (§8.2).
func TestDualRefreshPerFamily(t *testing.T) {
	s := startServer6(t)
	peer4 := sourcePeer(t, turntest.ListenUDP(t))
	peer6 := sourcePeer(t, listenUDP6(t))
	c := newRawClient(t, s.addrs[relay.UDP])
	resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.AdditionalAddressFamily(proto.FamilyIPv6))
	wantCode(t, "dual Allocate", resp, 0)
	relayed := relayedAddrs(t, resp)
	if len(relayed) != 2 {
		t.Fatalf("relayed addresses %v", relayed)
	}
	a := s.Table().ByRelayed(relayed[0])
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer4), stunPeer(peer6)), 0)

	resp = c.authed(stun.MethodRefresh, proto.FamilyIPv6, proto.Lifetime(1800*time.Second))
	wantCode(t, "Refresh IPv6", resp, 0)
	var lt proto.Lifetime
	if err := lt.GetFrom(resp); err != nil || time.Duration(lt) != 1800*time.Second {
		t.Errorf("Refresh IPv6 LIFETIME %v (%v), want 1800 s", time.Duration(lt), err)
	}
	if until := time.Until(a.Expires()); until < 1700*time.Second {
		t.Errorf("allocation expires in %v after its IPv6 half was refreshed for 1800 s", until)
	}

	wantCode(t, "Refresh IPv6 LIFETIME 0", c.authed(stun.MethodRefresh, proto.FamilyIPv6, proto.Lifetime(0)), 0)
	if s.Table().ByRelayed(relayed[1]) != nil || a.HasFamily(loopback6) {
		t.Fatal("the IPv6 relayed address outlived its deletion")
	}
	// Its socket is closed and its port free again.
	pc, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(relayed[1]))
	if err != nil {
		t.Fatalf("the deleted IPv6 relay port is still bound: %v", err)
	}
	_ = pc.Close()
	wantCode(t, "CreatePermission IPv6 after its deletion", c.authed(stun.MethodCreatePermission, stunPeer(peer6)), stun.CodePeerAddrFamilyMismatch)
	wantCode(t, "Refresh IPv6 after its deletion", c.authed(stun.MethodRefresh, proto.FamilyIPv6), stun.CodePeerAddrFamilyMismatch)
	// The IPv4 half relays on.
	c.sendTo(peer4, []byte("still there?"))
	if from, data := c.readData(); from != peer4 || string(data) != relayed[0].String() {
		t.Errorf("IPv4 half after the IPv6 one was deleted: from %v %q", from, data)
	}
	if s.Table().Len() != 1 {
		t.Fatalf("table holds %d allocations, want 1", s.Table().Len())
	}
	wantCode(t, "Refresh IPv4 LIFETIME 0", c.authed(stun.MethodRefresh, proto.FamilyIPv4, proto.Lifetime(0)), 0)
	if s.Table().Len() != 0 {
		t.Fatal("deleting the last half left the allocation")
	}
}

// TestAddressFamilyErrors: RFC 8656 §7.2 steps 5 to 9 and §10.2/§12.2 (443)
// on servers offering IPv4 only, IPv6 only and both.
func TestAddressFamilyErrors(t *testing.T) {
	udp := proto.RequestedTransport(proto.ProtoUDP)
	dual := proto.AdditionalAddressFamily(proto.FamilyIPv6)

	t.Run("ipv4 only", func(t *testing.T) {
		s := startServer(t, withPolicy(loopbackPolicy6()))
		c := newRawClient(t, s.addrs[relay.UDP])
		wantCode(t, "REQUESTED-ADDRESS-FAMILY IPv6", c.authed(stun.MethodAllocate, udp, proto.FamilyIPv6), stun.CodeAddrFamilyNotSupported)
		wantCode(t, "REQUESTED-ADDRESS-FAMILY 0x03", c.authed(stun.MethodAllocate, udp, proto.RequestedAddressFamily(3)), stun.CodeAddrFamilyNotSupported)
		wantCode(t, "malformed REQUESTED-ADDRESS-FAMILY", c.authed(stun.MethodAllocate, udp, rawAttr{stun.AttrRequestedAddressFamily, []byte{2}}), stun.CodeBadRequest)

		// A dual request granted IPv4 only: success with ADDRESS-ERROR-CODE
		// 440 for IPv6, and the same again for a retransmission.
		req := c.authedRequest(stun.MethodAllocate, udp, dual)
		for _, what := range []string{"dual Allocate", "its retransmission"} {
			resp := c.exchange(req)
			wantCode(t, what, resp, 0)
			if r := relayedAddrs(t, resp); len(r) != 1 || r[0].Addr() != loopback4 {
				t.Errorf("%s: relayed %v, want one IPv4 address", what, r)
			}
			var ae proto.AddressErrorCode
			if err := ae.GetFrom(resp); err != nil || ae.Family != proto.FamilyIPv6 || ae.Code != stun.CodeAddrFamilyNotSupported {
				t.Errorf("%s: ADDRESS-ERROR-CODE %+v (%v), want IPv6 440", what, ae, err)
			}
		}
		// 443: an IPv6 peer of an IPv4-only allocation.
		peer6 := stunPeer(netip.MustParseAddrPort("[::1]:5000"))
		wantCode(t, "CreatePermission IPv6 peer", c.authed(stun.MethodCreatePermission, peer6), stun.CodePeerAddrFamilyMismatch)
		wantCode(t, "ChannelBind IPv6 peer", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), peer6), stun.CodePeerAddrFamilyMismatch)
		wantCode(t, "Refresh IPv6", c.authed(stun.MethodRefresh, proto.FamilyIPv6), stun.CodePeerAddrFamilyMismatch)
		wantCode(t, "Refresh IPv4", c.authed(stun.MethodRefresh, proto.FamilyIPv4), 0)
	})

	t.Run("ipv6 only", func(t *testing.T) {
		listenUDP6(t)
		only6 := func(c *relay.Config) {
			c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: "[::1]:0"}}
			c.RelayIP = loopback6
		}
		s := startServer(t, withPolicy(loopbackPolicy6()), only6)
		c := newRawClient(t, s.addrs[relay.UDP])
		// §7.2 step 7: "If the REQUESTED-ADDRESS-FAMILY attribute is
		// absent and the server does not support the IPv4 address family,
		// the server MUST include an ERROR-CODE attribute with the 440".
		wantCode(t, "no REQUESTED-ADDRESS-FAMILY", c.authed(stun.MethodAllocate, udp), stun.CodeAddrFamilyNotSupported)
		wantCode(t, "REQUESTED-ADDRESS-FAMILY IPv4", c.authed(stun.MethodAllocate, udp, proto.FamilyIPv4), stun.CodeAddrFamilyNotSupported)
		resp := c.authed(stun.MethodAllocate, udp, dual)
		wantCode(t, "dual Allocate", resp, 0)
		var ae proto.AddressErrorCode
		if err := ae.GetFrom(resp); err != nil || ae.Family != proto.FamilyIPv4 || ae.Code != stun.CodeAddrFamilyNotSupported {
			t.Errorf("ADDRESS-ERROR-CODE %+v (%v), want IPv4 440", ae, err)
		}
		if r := relayedAddrs(t, resp); len(r) != 1 || r[0].Addr() != loopback6 {
			t.Errorf("relayed %v, want one IPv6 address", r)
		}
		peer4 := stunPeer(netip.AddrPortFrom(loopback4, 5000))
		wantCode(t, "CreatePermission IPv4 peer", c.authed(stun.MethodCreatePermission, peer4), stun.CodePeerAddrFamilyMismatch)
		wantCode(t, "ChannelBind IPv4 peer", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), peer4), stun.CodePeerAddrFamilyMismatch)

		// default_family = "keep": the family of the client's own address.
		keep := startServer(t, withPolicy(loopbackPolicy6()), only6, func(c *relay.Config) { c.DefaultFamily = relay.FamilyKeep })
		resp = newRawClient(t, keep.addrs[relay.UDP]).authed(stun.MethodAllocate, udp)
		wantCode(t, "keep: Allocate without REQUESTED-ADDRESS-FAMILY", resp, 0)
		if r := relayedAddrs(t, resp); len(r) != 1 || r[0].Addr() != loopback6 {
			t.Errorf("keep: relayed %v, want [::1]:port", r)
		}
	})

	t.Run("both", func(t *testing.T) {
		s := startServer6(t)
		c := newRawClient(t, s.addrs[relay.UDP])
		wantCode(t, "REQUESTED- and ADDITIONAL-ADDRESS-FAMILY", c.authed(stun.MethodAllocate, udp, proto.FamilyIPv4, dual), stun.CodeBadRequest)
		wantCode(t, "ADDITIONAL-ADDRESS-FAMILY IPv4", c.authed(stun.MethodAllocate, udp, proto.AdditionalAddressFamily(proto.FamilyIPv4)), stun.CodeBadRequest)
		wantCode(t, "ADDITIONAL-ADDRESS-FAMILY with EVEN-PORT R", c.authed(stun.MethodAllocate, udp, dual, proto.EvenPort{ReservePort: true}), stun.CodeBadRequest)
		wantCode(t, "ADDITIONAL-ADDRESS-FAMILY with RESERVATION-TOKEN", c.authed(stun.MethodAllocate, udp, dual, proto.ReservationToken("01234567")), stun.CodeBadRequest)
		wantCode(t, "malformed ADDITIONAL-ADDRESS-FAMILY", c.authed(stun.MethodAllocate, udp, rawAttr{proto.AttrAdditionalAddressFamily, []byte{2, 0}}), stun.CodeBadRequest)
		if s.Table().Len() != 0 {
			t.Fatalf("refused requests left %d allocations", s.Table().Len())
		}
		// Without REQUESTED-ADDRESS-FAMILY: IPv4 (RFC 8656 §7.2), though the
		// client is IPv6.
		resp := c.authed(stun.MethodAllocate, udp)
		wantCode(t, "Allocate without REQUESTED-ADDRESS-FAMILY", resp, 0)
		if r := relayedAddrs(t, resp); len(r) != 1 || r[0].Addr() != loopback4 {
			t.Errorf("relayed %v, want 127.0.0.1:port", r)
		}
		// A Send to a peer of the other family is dropped (no permission
		// can exist for it).
		peer6 := echoPeer6(t)
		c.sendTo(peer6.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("leak?"))
		_ = peer6.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := peer6.ReadFrom(make([]byte, 64)); err == nil {
			t.Fatalf("IPv6 peer got %d bytes from an IPv4 allocation", n)
		}
	})
}

// authedRequest builds the authenticated request authed sends, to send it
// more than once (a retransmission has the same transaction ID).
func (c *rawClient) authedRequest(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	if c.nonce == nil {
		resp := c.do(stun.NewType(stun.MethodAllocate, stun.ClassRequest), proto.RequestedTransport(proto.ProtoUDP))
		if err := c.nonce.GetFrom(resp); err != nil {
			c.t.Fatalf("challenge carries no NONCE: %v", err)
		}
	}
	all := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, setters...)
	all = append(all, stun.NewUsername(c.user), stun.NewRealm(testRealm), c.nonce,
		stun.NewLongTermIntegrity(c.user, testRealm, c.pass), stun.Fingerprint)
	return stun.MustBuild(all...)
}

// TestDualAllocationQuota: a dual allocation is one allocation against the
// user quota, though both its sockets come from the port pool.
func TestDualAllocationQuota(t *testing.T) {
	s := startServer6(t, withQuota(1))
	c := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "dual Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.AdditionalAddressFamily(proto.FamilyIPv6)), 0)
	other := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "second allocation", other.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeAllocQuotaReached)
	st := s.Stats()
	if st.RelayPortsInUse[loopback4] != 1 || st.RelayPortsInUse[loopback6] != 1 {
		t.Errorf("relay ports in use %v, want one on each family", st.RelayPortsInUse)
	}
}

// linkLocalOnLoopback returns a link-local address configured on lo (as
// by `ip -6 addr add fe80::1234/64 dev lo`), zoned, or skips the test.
func linkLocalOnLoopback(t *testing.T) netip.Addr {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	addrs, _ := lo.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				return ip.WithZone("lo")
			}
		}
	}
	t.Skip("no link-local address on lo (add one: ip -6 addr add fe80::1234/64 dev lo)")
	return netip.Addr{}
}

// TestLinkLocalClient: a client at a link-local address (fe80::…%lo) of a
// listener bound to every address is answered, and relayed to, through the
// batched receive path and the raw sends: both must keep the zone (the
// scope ID), or the kernel cannot route the answer.
func TestLinkLocalClient(t *testing.T) {
	ll := linkLocalOnLoopback(t)
	s := startServer(t, withPolicy(loopbackPolicy6()), func(c *relay.Config) {
		c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: "[::]:0"}}
		c.RelayIP = loopback6
	})
	_, port, _ := net.SplitHostPort(s.addrs[relay.UDP])
	server, err := netip.ParseAddrPort(net.JoinHostPort(ll.String(), port))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ll, 0)), net.UDPAddrFromAddrPort(server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawClient{t: t, conn: conn, user: testUser, pass: testPassword}
	resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.FamilyIPv6)
	wantCode(t, "Allocate from a link-local client", resp, 0)
	mapped, _ := proto.GetXORAddress(resp, stun.AttrXORMappedAddress)
	if mapped.Addr() != ll.WithZone("") {
		t.Errorf("mapped address %v, want %v", mapped, ll.WithZone(""))
	}
	peer := sourcePeer(t, listenUDP6(t))
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer)), 0)
	relayed := relayedAddrs(t, resp)
	c.sendTo(peer, []byte("hello"))
	if from, data := c.readData(); from != peer || string(data) != relayed[0].String() {
		t.Errorf("Data from %v %q, want from %v %q", from, data, peer, relayed[0])
	}
	// The data plane's answer left through the listener's raw sendmsg,
	// which needed the scope ID.
	var zoned bool
	s.Table().Range(func(a *allocations.Allocation) bool {
		zoned = a.FiveTuple.Client.Addr().Zone() == "lo"
		return true
	})
	if !zoned {
		t.Error("the allocation's client address lost its zone")
	}
}
