package relay_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// rawClient speaks STUN by hand over UDP (or TLS, where one Read returns
// one record), to check the exact answers the RFC asks for where pion's
// client would hide them.
type rawClient struct {
	t     *testing.T
	conn  net.Conn
	nonce stun.Nonce
	user  string
	pass  string
}

func newRawClient(t *testing.T, server string) *rawClient {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, user: testUser, pass: testPassword}
}

// newRawTLSClient is a rawClient over TLS: every Read returns at most one
// TLS record, so the client sees how the server cut its records.
func newRawTLSClient(t *testing.T, server string) *rawClient {
	t.Helper()
	return &rawClient{t: t, conn: turntest.DialTLS(t, server), user: testUser, pass: testPassword}
}

// do sends a request built from setters and returns the response.
func (c *rawClient) do(setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	req := stun.MustBuild(append([]stun.Setter{stun.TransactionID}, setters...)...)
	return c.exchange(req)
}

func (c *rawClient) exchange(req *stun.Message) *stun.Message {
	c.t.Helper()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := c.conn.Write(req.Raw); err != nil {
			c.t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.conn.Read(buf)
		if err != nil {
			continue
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := resp.Decode(); err != nil {
			c.t.Fatalf("undecodable response: %v", err)
		}
		if resp.TransactionID != req.TransactionID {
			continue
		}
		return resp
	}
	c.t.Fatal("no response")
	return nil
}

// authed sends an authenticated request, fetching a nonce first if needed.
func (c *rawClient) authed(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	return c.exchange(c.authedRequest(method, setters...))
}

// allocate makes a UDP allocation and returns its relayed address.
func (c *rawClient) allocate() netip.AddrPort {
	c.t.Helper()
	resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
	wantCode(c.t, "Allocate", resp, 0)
	relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
	if err != nil {
		c.t.Fatal(err)
	}
	return relayed
}

func errCode(t *testing.T, m *stun.Message) stun.ErrorCode {
	t.Helper()
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		t.Fatalf("error response without ERROR-CODE: %v", err)
	}
	return ec.Code
}

func wantCode(t *testing.T, what string, m *stun.Message, want stun.ErrorCode) {
	t.Helper()
	if got := errCode(t, m); got != want {
		t.Errorf("%s: code %d, want %d", what, got, want)
	}
}

func TestRFC8656ErrorCodes(t *testing.T) {
	s := startServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])

	// No credentials: 401 with REALM and NONCE, and FINGERPRINT.
	resp := c.do(stun.NewType(stun.MethodAllocate, stun.ClassRequest), proto.RequestedTransport(proto.ProtoUDP))
	wantCode(t, "unauthenticated Allocate", resp, stun.CodeUnauthorized)
	for _, a := range []stun.AttrType{stun.AttrRealm, stun.AttrNonce, stun.AttrFingerprint} {
		if !resp.Contains(a) {
			t.Errorf("401 lacks %v", a)
		}
	}
	if err := stun.Fingerprint.Check(resp); err != nil {
		t.Errorf("bad FINGERPRINT: %v", err)
	}

	peer := stunPeer(netip.MustParseAddrPort("127.0.0.1:40000"))

	// A request on a 5-tuple with no allocation: 437.
	wantCode(t, "Refresh without allocation", c.authed(stun.MethodRefresh, proto.Lifetime(time.Minute)), stun.CodeAllocMismatch)
	wantCode(t, "CreatePermission without allocation", c.authed(stun.MethodCreatePermission, peer), stun.CodeAllocMismatch)

	// Missing REQUESTED-TRANSPORT: 400. TCP relaying over UDP: 400 (RFC
	// 6062 §5.1). Another protocol: 442.
	wantCode(t, "Allocate without REQUESTED-TRANSPORT", c.authed(stun.MethodAllocate), stun.CodeBadRequest)
	wantCode(t, "Allocate for TCP over UDP", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoTCP)), stun.CodeBadRequest)
	wantCode(t, "Allocate for SCTP", c.authed(stun.MethodAllocate, proto.RequestedTransport(132)), stun.CodeUnsupportedTransProto)

	// Unknown comprehension-required attribute: 420 listing it.
	resp = c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), rawAttr{0x7777, []byte{1, 2, 3, 4}})
	wantCode(t, "unknown attribute", resp, stun.CodeUnknownAttribute)
	if !resp.Contains(stun.AttrUnknownAttributes) {
		t.Error("420 without UNKNOWN-ATTRIBUTES")
	}

	// A real allocation, with DONT-FRAGMENT accepted and the lifetime clamped.
	resp = c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.DontFragment{}, proto.Lifetime(10*time.Hour))
	wantCode(t, "Allocate", resp, 0)
	var lt proto.Lifetime
	if err := lt.GetFrom(resp); err != nil || time.Duration(lt) != relay.DefaultMaxLifetime {
		t.Errorf("granted lifetime %v (%v), want the 1h maximum", time.Duration(lt), err)
	}
	if err := stun.NewLongTermIntegrity(testUser, testRealm, testPassword).Check(resp); err != nil {
		t.Errorf("success response integrity: %v", err)
	}
	relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
	if err != nil || relayed.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("XOR-RELAYED-ADDRESS %v (%v)", relayed, err)
	}
	if mapped, err := proto.GetXORAddress(resp, stun.AttrXORMappedAddress); err != nil || mapped.String() != c.conn.LocalAddr().String() {
		t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %v", mapped, err, c.conn.LocalAddr())
	}

	// A second Allocate on the same 5-tuple (new transaction): 437.
	wantCode(t, "second Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeAllocMismatch)

	// Another user on this 5-tuple: 441.
	c.user, c.pass = "bob", "builder"
	wantCode(t, "Refresh by another user", c.authed(stun.MethodRefresh), stun.CodeWrongCredentials)
	c.user, c.pass = testUser, testPassword

	// Channel numbers outside 0x4000-0x4FFF: 400, also 0x5000-0x7FFF, RFC
	// 5766's range that RFC 8656 §12 reserves.
	for _, n := range []proto.ChannelNumber{0x3FFF, 0x5000, 0x7FFF, 0x0000, 0xFFFF} {
		wantCode(t, "ChannelBind out of range", c.authed(stun.MethodChannelBind, n, peer), stun.CodeBadRequest)
	}
	wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), peer), 0)
	// Rebinding the number to another peer, or the peer to another number: 400.
	other := stunPeer(netip.MustParseAddrPort("127.0.0.1:40001"))
	wantCode(t, "rebind number to other peer", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), other), stun.CodeBadRequest)
	wantCode(t, "rebind peer to other number", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), peer), stun.CodeBadRequest)
	wantCode(t, "refresh same binding", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), peer), 0)

	// Peer address family mismatch: 443. Denied peer: 403.
	wantCode(t, "IPv6 peer on IPv4 relay", c.authed(stun.MethodCreatePermission, stunPeer(netip.MustParseAddrPort("[2001:4860::1]:5000"))), stun.CodePeerAddrFamilyMismatch)
	wantCode(t, "metadata peer", c.authed(stun.MethodCreatePermission, stunPeer(netip.MustParseAddrPort("169.254.169.254:80"))), stun.CodeForbidden)
	wantCode(t, "CreatePermission without peer", c.authed(stun.MethodCreatePermission), stun.CodeBadRequest)

	// Refresh with LIFETIME 0 deletes at once.
	if s.Table().Len() != 1 {
		t.Fatalf("table has %d allocations, want 1", s.Table().Len())
	}
	resp = c.authed(stun.MethodRefresh, proto.Lifetime(0))
	wantCode(t, "Refresh 0", resp, 0)
	if n := s.Table().Len(); n != 0 {
		t.Errorf("table has %d allocations right after Refresh 0, want 0", n)
	}
	wantCode(t, "Refresh after delete", c.authed(stun.MethodRefresh), stun.CodeAllocMismatch)
}

func TestStaleNonce(t *testing.T) {
	s := startServer(t, withAuth(newAuth(t, time.Second)))
	c := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "fresh nonce", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
	time.Sleep(2100 * time.Millisecond) // nonce lifetime is whole seconds
	resp := c.authed(stun.MethodRefresh)
	wantCode(t, "stale nonce", resp, stun.CodeStaleNonce)
	var fresh stun.Nonce
	if err := fresh.GetFrom(resp); err != nil {
		t.Fatal("438 without a new NONCE")
	}
	c.nonce = fresh
	wantCode(t, "Refresh with the new nonce", c.authed(stun.MethodRefresh), 0)
}

// stunPeer is an XOR-PEER-ADDRESS setter.
type stunPeer netip.AddrPort

func (p stunPeer) AddTo(m *stun.Message) error {
	return proto.AddXORAddress(m, stun.AttrXORPeerAddress, netip.AddrPort(p))
}

// rawAttr adds an arbitrary attribute.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (r rawAttr) AddTo(m *stun.Message) error { m.Add(r.t, r.v); return nil }

// read returns the next datagram from the server.
func (c *rawClient) read() []byte {
	c.t.Helper()
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.conn.Read(buf)
	if err != nil {
		c.t.Fatalf("read from server: %v", err)
	}
	return buf[:n]
}

// TestSendDataAndChannelData drives both data paths by hand: a Send
// indication out and a Data indication back, then ChannelData both ways.
func TestSendDataAndChannelData(t *testing.T) {
	s := startServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])
	relayed := c.allocate()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	peerRead := func() ([]byte, netip.AddrPort) {
		t.Helper()
		buf := make([]byte, 2048)
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("peer read: %v", err)
		}
		return buf[:n], from
	}
	sendInd := func(data string) {
		m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
			stunPeer(peerAP), proto.Data(data), proto.DontFragment{})
		if _, err := c.conn.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
	}

	// Without a permission, a Send indication is dropped (RFC 8656 §11.2)...
	sendInd("dropped")
	_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := peer.ReadFromUDPAddrPort(make([]byte, 64)); err == nil {
		t.Fatal("Send indication relayed without a permission")
	}
	// ...and with one it reaches the peer from the relayed address.
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
	sendInd("via send")
	if got, from := peerRead(); string(got) != "via send" || from != relayed {
		t.Fatalf("peer got %q from %v, want %q from %v", got, from, "via send", relayed)
	}

	// The peer answers: a Data indication with its address.
	if _, err := peer.WriteToUDPAddrPort([]byte("via data"), relayed); err != nil {
		t.Fatal(err)
	}
	ind := &stun.Message{Raw: c.read()}
	if err := ind.Decode(); err != nil || ind.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		t.Fatalf("got %v (%v), want a Data indication", ind.Type, err)
	}
	var data proto.Data
	from, err := proto.GetXORAddress(ind, stun.AttrXORPeerAddress)
	if err := data.GetFrom(ind); err != nil || string(data) != "via data" || from != peerAP {
		t.Fatalf("Data indication carries %q from %v (%v), want %q from %v", data, from, err, "via data", peerAP)
	}

	// Bind a channel: ChannelData both ways from now on.
	wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4ABC), stunPeer(peerAP)), 0)
	cd := make([]byte, 4+5)
	copy(cd[4:], "hello")
	proto.PutChannelDataHeader(cd, 0x4ABC, 5)
	if _, err := c.conn.Write(cd); err != nil {
		t.Fatal(err)
	}
	if got, _ := peerRead(); string(got) != "hello" {
		t.Fatalf("peer got %q over the channel, want hello", got)
	}
	// ChannelData on an unbound channel goes nowhere.
	proto.PutChannelDataHeader(cd, 0x4ABD, 5)
	_, _ = c.conn.Write(cd)
	if _, err := peer.WriteToUDPAddrPort([]byte("back"), relayed); err != nil {
		t.Fatal(err)
	}
	number, payload, err := proto.ParseChannelData(c.read())
	if err != nil || number != 0x4ABC || string(payload) != "back" {
		t.Fatalf("client got channel %#x %q (%v), want 0x4abc \"back\"", number, payload, err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := peer.ReadFromUDPAddrPort(make([]byte, 64)); err == nil {
		t.Fatal("ChannelData on an unbound channel reached the peer")
	}
}

// TestTLSRecordPerFrame: to a TLS client, every Data indication and every
// ChannelData message arrives in a TLS record of its own, however many the
// relay loop sends at once. coturn's turnutils_uclient takes one SSL_read
// for one message and loses the rest of a record that holds two.
func TestTLSRecordPerFrame(t *testing.T) {
	s := startServer(t)
	c := newRawTLSClient(t, s.addrs[relay.TLS])
	relayed := c.allocate()
	peer := turntest.ListenUDP(t)
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)

	// The peer sends a burst, which the relay loop reads in batches of
	// several datagrams (recvmmsg) and writes in one system call.
	const burst = 64
	sendBurst := func() {
		for i := range burst {
			if _, err := peer.WriteToUDPAddrPort(fmt.Appendf(nil, "message %02d", i), relayed); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendBurst()
	for i := range burst {
		rec := c.read()
		ind := &stun.Message{Raw: rec}
		if err := ind.Decode(); err != nil || ind.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			t.Fatalf("record %d: %v (%v), want a Data indication", i, ind.Type, err)
		}
		if n := 20 + int(ind.Length); n != len(rec) {
			t.Fatalf("record %d holds %d bytes, its Data indication %d: several frames in one record", i, len(rec), n)
		}
	}

	wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(peerAP)), 0)
	sendBurst()
	for i := range burst {
		rec := c.read()
		number, payload, err := proto.ParseChannelData(rec)
		if err != nil || number != 0x4001 {
			t.Fatalf("record %d: channel %#x (%v), want ChannelData on 0x4001", i, number, err)
		}
		// RFC 8656 §12.5: padded to a multiple of 4 over TCP and TLS.
		if want := proto.ChannelDataHeaderSize + proto.PaddedLen(len(payload)); len(rec) != want {
			t.Fatalf("record %d holds %d bytes, its ChannelData message %d: several frames in one record", i, len(rec), want)
		}
	}
}

// TestStreamAllocationEndsWithConnection: an allocation made over TCP ends
// when its connection closes (RFC 8656 §3.1), and a stream that is not
// TURN is closed at once without touching anyone else.
func TestStreamAllocationEndsWithConnection(t *testing.T) {
	s := startServer(t)
	addr := s.addrs[relay.TCP]
	conn := clientConn(t, relay.TCP, addr, false)
	client := newClient(t, conn, addr, testUser, testPassword)
	if _, err := client.Allocate(); err != nil {
		t.Fatal(err)
	}
	if n := s.Table().Len(); n != 1 {
		t.Fatalf("table has %d allocations, want 1", n)
	}

	// Garbage and HTTP on other connections are closed by the server.
	for _, junk := range []string{"\xff\xff\xff\xff garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x00\x01\x00\x00\x00\x00\x00\x00bad cookie.."} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(junk))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 16)); err == nil || isTimeout(err) {
			t.Errorf("connection sending %q was not closed by the server (%v)", junk, err)
		}
		_ = c.Close()
	}
	if n := s.Table().Len(); n != 1 {
		t.Fatalf("junk connections disturbed the allocation table: %d allocations", n)
	}

	_ = conn.Close() // the client's TCP connection goes away without a Refresh
	deadline := time.Now().Add(2 * time.Second)
	for s.Table().Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("allocation survived its TCP connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestEvenPortReservation: EVEN-PORT with the R bit gets an even port and a
// RESERVATION-TOKEN for the next one (RFC 8656 §7.2), which a second
// Allocate redeems exactly once.
func TestEvenPortReservation(t *testing.T) {
	s := startServer(t)
	rtp := newRawClient(t, s.addrs[relay.UDP])
	resp := rtp.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.EvenPort{ReservePort: true})
	wantCode(t, "Allocate EVEN-PORT R=1", resp, 0)
	relayed, _ := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
	if relayed.Port()%2 != 0 {
		t.Fatalf("relayed port %d is odd", relayed.Port())
	}
	var token proto.ReservationToken
	if err := token.GetFrom(resp); err != nil {
		t.Fatalf("no RESERVATION-TOKEN: %v", err)
	}

	rtcp := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "token with EVEN-PORT", rtcp.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), token, proto.EvenPort{}), stun.CodeBadRequest)
	resp = rtcp.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), token)
	wantCode(t, "Allocate with the token", resp, 0)
	next, _ := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
	if next.Port() != relayed.Port()+1 {
		t.Fatalf("reserved allocation got port %d, want %d", next.Port(), relayed.Port()+1)
	}
	third := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "token used twice", third.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), token), stun.CodeInsufficientCapacity)
	wantCode(t, "unknown token", third.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.ReservationToken("01234567")), stun.CodeInsufficientCapacity)

	plain := newRawClient(t, s.addrs[relay.UDP])
	resp = plain.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.EvenPort{})
	wantCode(t, "Allocate EVEN-PORT R=0", resp, 0)
	if p, _ := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress); p.Port()%2 != 0 || resp.Contains(stun.AttrReservationToken) {
		t.Fatalf("EVEN-PORT without R: port %d, token present %v", p.Port(), resp.Contains(stun.AttrReservationToken))
	}
}

// TestPeerPolicyThroughServer drives the default peer policy through a real
// server, IPv4 and IPv6, with the encodings that bypassed other servers'
// filters (coturn CVE-2020-26262, restund CVE-2021-21382): every one must be
// refused with 403 on CreatePermission and ChannelBind.
func TestPeerPolicyThroughServer(t *testing.T) {
	denied4 := []string{
		"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "100.64.0.1", "169.254.169.254", "192.0.0.8", "192.0.2.1", "198.18.0.1",
		"198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
	}
	denied6 := []string{
		"::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1", "fe80::1", "fd00::1", "fc00::1", "ff02::1",
		"2001:db8::1", "100::1", "2002:7f00:1::1", "2001::1", "fec0::1",
	}
	allowed4 := []string{"8.8.8.8", "1.1.1.1"}
	allowed6 := []string{"2606:4700::1111", "2001:4860:4860::8888"}

	for _, family := range []struct {
		name, listen, relayIP string
		family                proto.RequestedAddressFamily
		denied, allowed       []string
	}{
		{"ipv4", "127.0.0.1:0", "127.0.0.1", proto.FamilyIPv4, denied4, allowed4},
		{"ipv6", "[::1]:0", "::1", proto.FamilyIPv6, denied6, allowed6},
	} {
		t.Run(family.name, func(t *testing.T) {
			s := startServer(t, withPolicy(auth.NewPeerPolicy(nil, nil)), func(c *relay.Config) {
				c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: family.listen}}
				c.RelayIP = netip.MustParseAddr(family.relayIP)
			})
			c := newRawClient(t, s.addrs[relay.UDP])
			// RFC 8656 §7.2: without REQUESTED-ADDRESS-FAMILY the relayed
			// address is IPv4, which this IPv6-only server has not.
			wantCode(t, "Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), family.family), 0)
			for i, ip := range family.denied {
				var peer stun.Setter = stunPeer(netip.AddrPortFrom(netip.MustParseAddr(ip), 5000))
				if addr := netip.MustParseAddr(ip); addr.Is4In6() {
					// Sent as family IPv6, as an attacker would: our encoder
					// would turn it into plain IPv4.
					peer = xorPeer6{addr, 5000}
				}
				wantCode(t, "CreatePermission to "+ip, c.authed(stun.MethodCreatePermission, peer), stun.CodeForbidden)
				wantCode(t, "ChannelBind to "+ip, c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000+i), peer), stun.CodeForbidden)
			}
			for _, ip := range family.allowed {
				peer := stunPeer(netip.AddrPortFrom(netip.MustParseAddr(ip), 5000))
				wantCode(t, "CreatePermission to "+ip, c.authed(stun.MethodCreatePermission, peer), 0)
			}
		})
	}
}

// xorPeer6 encodes XOR-PEER-ADDRESS with family IPv6 whatever the address
// (RFC 8489 §14.2), so IPv4-mapped forms reach the server as sent.
type xorPeer6 struct {
	ip   netip.Addr
	port uint16
}

func (p xorPeer6) AddTo(m *stun.Message) error {
	v := make([]byte, 20)
	v[1] = 0x02
	binary.BigEndian.PutUint16(v[2:4], p.port^0x2112)
	ip := p.ip.As16()
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], 0x2112A442)
	copy(key[4:], m.TransactionID[:])
	for i := range ip {
		v[4+i] = ip[i] ^ key[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}
