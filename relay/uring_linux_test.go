package relay_test

import (
	"fmt"
	"io"
	"log/slog"
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

// uringServer starts a test server whose relay sockets are read with
// io_uring, or skips where the kernel has none.
func uringServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	cfg := relay.Config{IO: relay.IOUring, Auth: newAuth(t, 0), Policy: loopbackPolicy()}
	if _, err := relay.New(cfg); err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	s := startServer(t, append([]serverOption{func(c *relay.Config) { c.IO = relay.IOUring }}, opts...)...)
	if s.UringServed() < 0 {
		t.Fatal("io = io_uring started without reactors")
	}
	return s
}

// peerTo is a peer socket and its address.
func peerTo(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	p := turntest.ListenPeer(t)
	return p, p.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestUringRelays: with io_uring, what a permitted peer sends reaches the
// client (a Data indication from a reactor), the client's Send
// indications reach the peer, and a peer without permission is dropped
// (RFC 8656 §11.3) and counted; a reloaded policy that denies the peer
// stops it at the next packet.
func TestUringRelays(t *testing.T) {
	s := uringServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])
	relayed := c.allocate()
	peer, peerAP := peerTo(t)
	// Permissions are per IP (RFC 8656 §9): the stranger is on another.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
	turntest.WaitFor(t, "the relay socket served by a reactor", func() bool { return s.UringServed() == 1 })
	if s.UringListeners() == 0 {
		t.Fatal("the UDP listener's sockets are not read by a reactor")
	}

	c.sendIndication(peerAP, "to peer")
	buf := make([]byte, 2048)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "to peer" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	for i := range 50 {
		if _, err := peer.WriteToUDPAddrPort([]byte("from peer"), relayed); err != nil {
			t.Fatal(err)
		}
		from, data, ok := c.readDataIndication(2 * time.Second)
		if !ok || from != peerAP || string(data) != "from peer" {
			t.Fatalf("datagram %d: Data indication %q from %v (%v), want %q from %v", i, data, from, ok, "from peer", peerAP)
		}
	}

	before := s.Stats().Drops["no_permission"]
	if _, err := stranger.WriteToUDPAddrPort([]byte("unasked"), relayed); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "the stranger's datagram dropped", func() bool { return s.Stats().Drops["no_permission"] > before })
	if _, data, ok := c.readDataIndication(200 * time.Millisecond); ok {
		t.Fatalf("a peer without permission reached the client: %q", data)
	}

	s.SetPolicy(auth.NewPeerPolicy(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}))
	if _, err := peer.WriteToUDPAddrPort([]byte("denied now"), relayed); err != nil {
		t.Fatal(err)
	}
	if _, data, ok := c.readDataIndication(300 * time.Millisecond); ok {
		t.Fatalf("a peer the reloaded policy denies reached the client: %q", data)
	}
	turntest.WaitFor(t, "every buffer given back", func() bool { b, _ := s.UringHeld(); return b == 0 })
}

// TestUringAllocationEnd: allocations that expire, or are deleted, while
// their peers keep sending leave nothing behind in the reactors: no
// socket, no buffer held, and their relay ports are free again.
func TestUringAllocationEnd(t *testing.T) {
	s := uringServer(t, func(c *relay.Config) { c.DefaultLifetime, c.MaxLifetime = time.Second, time.Second })
	const n = 4
	var relayedAddrs []netip.AddrPort
	stop := make(chan struct{})
	done := make(chan struct{})
	var peers []*net.UDPConn
	var clients []*rawClient
	for range n {
		c := newRawClient(t, s.addrs[relay.UDP])
		relayed := c.allocate()
		relayedAddrs = append(relayedAddrs, relayed)
		peer, peerAP := peerTo(t)
		peers = append(peers, peer)
		wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
		clients = append(clients, c)
	}
	turntest.WaitFor(t, "every relay socket served", func() bool { return s.UringServed() == n })
	go func() {
		defer close(done)
		for {
			for i, p := range peers {
				_, _ = p.WriteToUDPAddrPort(make([]byte, 1200), relayedAddrs[i])
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	// Half are deleted (Refresh with LIFETIME 0) under the flood, half
	// expire. The answers are not waited for: the flood fills the
	// clients' receive buffers, which would drop them.
	for i := 0; i < n; i += 2 {
		req := clients[i].authedRequest(stun.MethodRefresh, proto.Lifetime(0))
		if _, err := clients[i].conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Table().Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations never expired", s.Table().Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	turntest.WaitFor(t, "the reactors let go of every socket", func() bool {
		b, socks := s.UringHeld()
		return s.UringServed() == 0 && socks == 0 && b == 0
	})
	close(stop)
	<-done
	for _, a := range relayedAddrs {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Fatalf("relay port of an ended allocation still bound: %v", err)
		}
		_ = pc.Close()
	}
}

// TestUringFallback: when the reactors cannot be set up, io = auto falls
// back to epoll and relays all the same.
func TestUringFallback(t *testing.T) {
	cfg := relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true, Auth: newAuth(t, 0), Policy: loopbackPolicy(),
		RelayIP: netip.MustParseAddr("127.0.0.1"), RelayPorts: testRelayPorts, IO: relay.IOAuto,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	relay.FailUringSetup(srv)
	turntest.Start(t, srv)
	if got := srv.UringServed(); got != -1 {
		t.Fatalf("UringServed = %d after a failed setup, want -1 (no reactors)", got)
	}
	c := newRawClient(t, srv.Addrs()[0].Addr.String())
	relayed := c.allocate()
	peer, peerAP := peerTo(t)
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
	if _, err := peer.WriteToUDPAddrPort([]byte("via epoll"), relayed); err != nil {
		t.Fatal(err)
	}
	if _, data, ok := c.readDataIndication(2 * time.Second); !ok || string(data) != "via epoll" {
		t.Fatalf("Data indication %q (%v), want %q", data, ok, "via epoll")
	}
}

// TestCheckIO: the setting's values, and a clear error for others.
func TestCheckIO(t *testing.T) {
	for _, v := range []string{"", relay.IOAuto, relay.IOUring, relay.IOEpoll} {
		if err := relay.CheckIO(v); err != nil {
			t.Errorf("CheckIO(%q): %v", v, err)
		}
	}
	if err := relay.CheckIO("kqueue"); err == nil {
		t.Error("CheckIO(kqueue) accepted")
	}
	if _, err := relay.New(relay.Config{IO: "kqueue", Auth: newAuth(t, 0), Policy: loopbackPolicy()}); err == nil {
		t.Error("New accepted io = kqueue")
	}
}

// uringChannel starts an io_uring server with one UDP allocation whose
// channel 0x4001 is bound to a peer, its relay socket served by a reactor.
func uringChannel(t *testing.T) (s *testServer, c *rawClient, relayed netip.AddrPort, peer *net.UDPConn) {
	t.Helper()
	s = uringServer(t)
	c, relayed, peer = boundChannel(t, s)
	turntest.WaitFor(t, "the relay socket served by a reactor", func() bool { return s.UringServed() == 1 })
	return s, c, relayed, peer
}

// boundChannel is a UDP client of s with an allocation and channel 0x4001
// bound to a peer socket.
func boundChannel(t *testing.T, s *testServer) (c *rawClient, relayed netip.AddrPort, peer *net.UDPConn) {
	t.Helper()
	c = newRawClient(t, s.addrs[relay.UDP])
	relayed = c.allocate()
	peer, peerAP := peerTo(t)
	wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(peerAP)), 0)
	return c, relayed, peer
}

// TestUringChannelDataDirect: with io_uring, a client's ChannelData
// leaves for the peer from the reactor's receive buffer, from the
// allocation's relayed address, counted in the allocation's traffic; a
// channel that is not bound is dropped (RFC 8656 §12.6), and a reload
// that denies the peer stops the next datagram (the policy is re-checked
// per packet).
func TestUringChannelDataDirect(t *testing.T) {
	s, c, relayed, peer := uringChannel(t)

	frame := func(number uint16, payload string) []byte { return channelFrame(number, []byte(payload)) }
	const n = 20
	buf := make([]byte, 2048)
	bytes := 0
	for i := range n {
		want := fmt.Sprintf("datagram %d", i)
		bytes += len(want)
		if _, err := c.conn.Write(frame(0x4001, want)); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:got]) != want || from != relayed {
			t.Fatalf("peer read %q from %v (%v), want %q from %v", buf[:got], from, err, want, relayed)
		}
	}
	if d := s.UringDirect(); d != n {
		t.Fatalf("%d datagrams sent from the receive buffer, want %d", d, n)
	}
	turntest.WaitFor(t, "the datagrams counted", func() bool {
		tr := s.Stats().ToPeer
		return tr.Packets == n && tr.Bytes == uint64(bytes)
	})

	// An empty ChannelData is an empty datagram to the peer.
	if _, err := c.conn.Write(frame(0x4001, "")); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, from, err := peer.ReadFromUDPAddrPort(buf); err != nil || got != 0 || from != relayed {
		t.Fatalf("peer read %d bytes from %v (%v), want an empty datagram from %v", got, from, err, relayed)
	}

	before := s.Stats().Drops["no_permission"]
	if _, err := c.conn.Write(frame(0x4002, "unbound")); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "the unbound channel's datagram dropped", func() bool {
		return s.Stats().Drops["no_permission"] == before+1
	})

	s.SetPolicy(auth.NewPeerPolicy(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}))
	if _, err := c.conn.Write(frame(0x4001, "after the reload")); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, _, err := peer.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("denied peer got %q", buf[:got])
	}
	if d := s.UringDirect(); d != n {
		t.Fatalf("%d datagrams sent from the receive buffer after the deny, want %d", d, n)
	}
}

// TestUringIdleSleeps: an idle reactor sleeps until something completes:
// with an allocation and nothing relayed it makes a handful of waits in
// half a second, not one per minimum wait (about 5000).
func TestUringIdleSleeps(t *testing.T) {
	s := uringServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])
	c.allocate()
	turntest.WaitFor(t, "the relay socket served by a reactor", func() bool { return s.UringServed() == 1 })
	time.Sleep(50 * time.Millisecond) // the allocation's completions are in
	before := s.UringEnters()
	time.Sleep(500 * time.Millisecond)
	if n := s.UringEnters() - before; n > 50 {
		t.Fatalf("the idle reactor waited %d times in 500 ms, want at most 50", n)
	}
}

// TestUringGSORuns: bursts in both directions of one allocation leave in
// GSO runs, and every datagram arrives whole, in order, and counted.
func TestUringGSORuns(t *testing.T) {
	s, c, relayed, peer := uringChannel(t)

	const burst = 48
	payload := func(i int) []byte { // 300 bytes, the last of a burst shorter
		b := []byte(fmt.Sprintf("%04d", i))
		if i%burst == burst-1 {
			return b
		}
		return append(b, make([]byte, 296)...)
	}
	buf := make([]byte, 2048)
	sent := 0
	for round := 0; round < 10 && s.UringRuns() < 2; round++ {
		frames := make([][]byte, burst)
		for i := range frames {
			p := payload(sent + i)
			frames[i] = make([]byte, proto.ChannelDataHeaderSize+len(p))
			copy(proto.PutChannelData(frames[i], 0x4001, len(p), false)[proto.ChannelDataHeaderSize:], p)
		}
		for _, f := range frames { // client → peer
			if _, err := c.conn.Write(f); err != nil {
				t.Fatal(err)
			}
		}
		for i := range burst {
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if want := payload(sent + i); err != nil || from != relayed || string(buf[:n]) != string(want) {
				t.Fatalf("peer datagram %d: %d bytes %q… from %v (%v), want %d bytes from %v", sent+i, n, buf[:min(n, 4)], from, err, len(want), relayed)
			}
		}
		for i := range burst { // peer → client
			if _, err := peer.WriteToUDPAddrPort(payload(sent+i), relayed); err != nil {
				t.Fatal(err)
			}
		}
		for i := range burst {
			number, data, err := proto.ParseChannelData(c.read())
			if want := payload(sent + i); err != nil || number != 0x4001 || string(data) != string(want) {
				t.Fatalf("client datagram %d: channel %#x, %d bytes %q… (%v), want %d bytes", sent+i, number, len(data), data[:min(len(data), 4)], err, len(want))
			}
		}
		sent += burst
	}
	if s.UringRuns() == 0 {
		t.Fatalf("no GSO run in %d datagrams each way", sent)
	}
	turntest.WaitFor(t, "every datagram counted", func() bool {
		st := s.Stats()
		return st.ToPeer.Packets == uint64(sent) && st.ToClient.Packets == uint64(sent)
	})
}
