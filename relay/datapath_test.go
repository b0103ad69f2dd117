package relay

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay/proto"
)

// countingSink counts frames relayed to the client, allocation-free.
type countingSink struct {
	frames atomic.Int64
	last   atomic.Int64 // length of the last frame
}

func (c *countingSink) WriteToClient(b []byte) error {
	c.last.Store(int64(len(b)))
	c.frames.Add(1)
	return nil
}

// dataPathFixture is a server (not started) holding one UDP allocation with
// a permission and a channel for a loopback peer socket.
type dataPathFixture struct {
	s     *Server
	ft    allocations.FiveTuple
	a     *allocations.Allocation
	peer  *net.UDPConn
	sink  *countingSink
	chNum uint16
}

func newDataPathFixture(tb testing.TB, transport allocations.Transport, opts ...func(*Config)) *dataPathFixture {
	tb.Helper()
	au, err := auth.New(auth.Config{Realm: "bench", Users: map[string]string{"u": "p"}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		Auth:   au,
		Policy: auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.table.Close)
	conn, err := s.ports.ListenUDP(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := prepareRelaySocket(mustOut(tb, conn), false); err != nil { // as Allocate does
		tb.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = peer.Close() })
	f := &dataPathFixture{
		s: s,
		ft: allocations.FiveTuple{
			Client:    netip.MustParseAddrPort("127.0.0.1:40000"),
			Server:    netip.MustParseAddrPort("127.0.0.1:3478"),
			Transport: transport,
		},
		peer:  peer,
		sink:  &countingSink{},
		chNum: 0x4001,
	}
	// A TCP/TLS client is the counting sink itself; a UDP client is what
	// production has, a udpSink on a listener socket, with a real client
	// socket whose reader feeds the counts.
	var sink allocations.ClientSink = f.sink
	switch transport {
	case allocations.UDP:
		sink = f.udpClient(tb)
	case allocations.TLS:
		sink = f.tlsClient(tb)
	}
	f.a = &allocations.Allocation{
		FiveTuple: f.ft, Username: "u", User: "u",
		Relayed: conn.LocalAddr().(*net.UDPAddr).AddrPort(), Conn: conn, Raw: mustOut(tb, conn).raw, Sink: sink,
	}
	if err := s.table.Create(f.a, time.Hour); err != nil {
		tb.Fatal(err)
	}
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := f.a.BindChannel(f.chNum, peerAP, time.Now()); err != nil {
		tb.Fatal(err)
	}
	return f
}

// newIPv6DataPathFixture is newDataPathFixture with a dual allocation
// (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY) instead: relay sockets on
// 127.0.0.1 and ::1, the permission and channel for a peer socket on ::1,
// which the IPv6 socket relays to.
func newIPv6DataPathFixture(tb testing.TB, transport allocations.Transport) *dataPathFixture {
	tb.Helper()
	f := newDataPathFixture(tb, transport, func(c *Config) {
		c.Policy = auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, nil)
	})
	// The IPv4 allocation stays (removing it would close a TLS client's
	// sink): the dual one is another client port's, sharing the sink.
	sink := f.a.Sink
	f.ft.Client = netip.AddrPortFrom(f.ft.Client.Addr(), f.ft.Client.Port()+1)
	conn4, err := f.s.ports.ListenUDP(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		tb.Fatal(err)
	}
	conn6, err := f.s.ports.ListenUDP(netip.IPv6Loopback())
	if err != nil {
		tb.Skipf("no IPv6 loopback: %v", err)
	}
	peer, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = peer.Close() })
	f.peer = peer
	f.a = &allocations.Allocation{
		FiveTuple: f.ft, Username: "u", User: "u",
		Relayed: conn4.LocalAddr().(*net.UDPAddr).AddrPort(), Conn: conn4, Raw: mustOut(tb, conn4).raw, Sink: sink,
		Half6: &allocations.Half6{Relayed: conn6.LocalAddr().(*net.UDPAddr).AddrPort(), Conn: conn6, Raw: mustOut(tb, conn6).raw},
	}
	if err := f.s.table.Create(f.a, time.Hour); err != nil {
		tb.Fatal(err)
	}
	if err := f.a.BindChannel(f.chNum, f.peerAddr(), time.Now()); err != nil {
		tb.Fatal(err)
	}
	return f
}

// fixtureFor returns the IPv4 fixture, or the dual one when v6.
func fixtureFor(tb testing.TB, transport allocations.Transport, v6 bool) *dataPathFixture {
	if v6 {
		return newIPv6DataPathFixture(tb, transport)
	}
	return newDataPathFixture(tb, transport)
}

// udpClient makes a listener socket and a client socket on loopback and
// returns the udpSink from one to the other; what reaches the client is
// counted in f.sink (by a reader that allocates nothing per datagram).
func (f *dataPathFixture) udpClient(tb testing.TB) *udpSink {
	tb.Helper()
	listener, client := turntest.ListenUDP(tb), turntest.ListenUDP(tb)
	go func() {
		buf := make([]byte, 70000)
		for {
			n, _, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_ = f.sink.WriteToClient(buf[:n])
		}
	}()
	return &udpSink{out: mustOut(tb, listener), addr: client.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// tlsClient makes a TLS 1.3 connection over loopback TCP (newTLSSink) and
// returns the server's end. The client reads the raw records, as a
// tls.Conn's reads allocate: each is counted in f.sink as one frame of its
// plaintext's length.
func (f *dataPathFixture) tlsClient(tb testing.TB) *streamSink {
	tb.Helper()
	sink, raw := newTLSSink(tb)
	go func() {
		// A TLS 1.3 record: 5-byte header, then the plaintext, its
		// content type byte and a 16-byte AEAD tag.
		const header, overhead = 5, 1 + 16
		buf := make([]byte, 1<<17)
		have := 0
		for {
			n, err := raw.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
			at := 0
			for have-at >= header {
				size := header + int(binary.BigEndian.Uint16(buf[at+3:at+5]))
				if have-at < size {
					break
				}
				_ = f.sink.WriteToClient(buf[at+header : at+size-overhead])
				at += size
			}
			have = copy(buf, buf[at:have])
		}
	}()
	return sink
}

// newTLSSink makes a TLS 1.3 connection over loopback TCP and returns the
// server's end as production has it (a tls.Conn over a recordConn, in a
// streamSink) and the client's TCP connection, past the handshake, for the
// caller to read the records from.
func newTLSSink(tb testing.TB) (*streamSink, net.Conn) {
	tb.Helper()
	cert, err := SelfSignedCertificate()
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	accepted, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	records := &recordConn{Conn: accepted}
	// No session tickets: the first records after the handshake are ours.
	server := tls.Server(records, &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	client := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // self-signed test certificate
	tb.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	handshake := make(chan error, 1)
	go func() { handshake <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-handshake; err != nil {
		tb.Fatal(err)
	}
	return &streamSink{conn: server, records: records}, raw
}

// BenchmarkTLSBatch prices a record per frame: 16 ChannelData frames of
// 1200-byte payloads to a TLS client sealed in one record and written at
// once (what Postern did before coturn's uclient showed it loses the rest
// of a record), against one record each gathered into one write
// (streamSink.writeFrames).
func BenchmarkTLSBatch(b *testing.B) {
	frame := make([]byte, proto.ChannelDataHeaderSize+1200)
	proto.PutChannelDataHeader(frame, 0x4000, 1200)
	batch := make([]byte, 0, 16*len(frame))
	for range 16 {
		batch = append(batch, frame...)
	}
	for _, tc := range []struct {
		name  string
		write func(sink *streamSink, scratch []byte) ([]byte, error)
	}{
		{"one record", func(sink *streamSink, scratch []byte) ([]byte, error) { return scratch, sink.WriteToClient(batch) }},
		{"a record per frame", func(sink *streamSink, scratch []byte) ([]byte, error) { return sink.writeFrames(batch, scratch) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sink, raw := newTLSSink(b)
			go func() { _, _ = io.Copy(io.Discard, raw) }()
			scratch := make([]byte, 0, recordsBufSize)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if scratch, err = tc.write(sink, scratch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func (f *dataPathFixture) peerAddr() netip.AddrPort {
	return f.peer.LocalAddr().(*net.UDPAddr).AddrPort()
}

// drainPeer reads everything the relay sends to the peer until closed.
func (f *dataPathFixture) drainPeer(got *atomic.Int64) {
	buf := make([]byte, 2048)
	for {
		if _, _, err := f.peer.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
		got.Add(1)
	}
}

func channelDataPacket(number uint16, payload int) []byte {
	pkt := make([]byte, proto.ChannelDataHeaderSize+payload)
	proto.PutChannelDataHeader(pkt, number, payload)
	return pkt
}

func sendIndicationPacket(tb testing.TB, peer netip.AddrPort, payload int) []byte {
	tb.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		setterFunc(func(m *stun.Message) error { return proto.AddXORAddress(m, stun.AttrXORPeerAddress, peer) }),
		proto.Data(make([]byte, payload)))
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// TestClientToPeerAllocatesNothing proves the client→peer data plane
// (ChannelData and Send indications) allocates nothing per packet.
func TestClientToPeerAllocatesNothing(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testClientToPeerAllocatesNothing(t, false) })
	t.Run("ipv6 peer of a dual allocation", func(t *testing.T) { testClientToPeerAllocatesNothing(t, true) })
}

func testClientToPeerAllocatesNothing(t *testing.T, v6 bool) {
	f := fixtureFor(t, allocations.UDP, v6)
	var got atomic.Int64
	go f.drainPeer(&got)

	cd := channelDataPacket(f.chNum, 1200)
	tx := newTxRun(f.s) // as the listener loop does: one run, reused
	if n := testing.AllocsPerRun(1000, func() { f.s.relayChannelDataAt(f.ft, cd, time.Now(), tx); tx.flush() }); n != 0 {
		t.Errorf("ChannelData relay: %v allocations per packet, want 0", n)
	}
	// Bursts overflow the peer's socket buffer; some must arrive.
	waitFor(t, func() bool { return got.Load() > 0 }, "peer to receive relayed ChannelData")
	got.Store(0)
	send := sendIndicationPacket(t, f.peerAddr(), 1200)
	var msg stun.Message
	f.s.relaySend(f.ft, send, &msg, tx) // first call sizes msg.Attributes
	tx.flush()
	if n := testing.AllocsPerRun(1000, func() { f.s.relaySend(f.ft, send, &msg, tx); tx.flush() }); n != 0 {
		t.Errorf("Send indication relay: %v allocations per packet, want 0", n)
	}
	waitFor(t, func() bool { return got.Load() > 0 }, "peer to receive relayed Send indications")
}

// TestPeerToClientAllocatesNothing proves the peer→client loop allocates
// nothing per packet, for ChannelData and for Data indications.
func TestPeerToClientAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport allocations.Transport
		channel   bool
		v6        bool // from an IPv6 peer to the IPv6 socket of a dual allocation
	}{
		{"udp channel", allocations.UDP, true, false},
		{"tcp channel padded", allocations.TCP, true, false},
		{"tls channel, a record each", allocations.TLS, true, false},
		{"udp data indication", allocations.UDP, false, false},
		{"tls data indication, a record each", allocations.TLS, false, false},
		{"ipv6 udp channel", allocations.UDP, true, true},
		{"ipv6 tcp channel padded", allocations.TCP, true, true},
		{"ipv6 udp data indication", allocations.UDP, false, true},
		{"ipv6 tls data indication, a record each", allocations.TLS, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled && tc.transport == allocations.TLS {
				t.Skip("crypto/tls pools its record buffers (sync.Pool), which the race detector empties at random; scripts/test runs this without -race")
			}
			f := fixtureFor(t, tc.transport, tc.v6)
			src := f.peer
			if !tc.channel {
				// A second peer with a permission but no channel.
				other, err := net.ListenUDP("udp", &net.UDPAddr{IP: f.peerAddr().Addr().AsSlice()})
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close()
				src = other
			}
			to := f.a.Relayed
			if tc.v6 {
				to = f.a.Half6.Relayed
				go f.s.relayFromSocket(f.a, f.a.Half6.Conn)
			} else {
				go f.s.relayFromPeers(f.a)
			}
			payload := make([]byte, 1001)
			// sendUntil keeps at most 64 packets in flight, so the relay
			// socket's buffer never overflows, until target frames have
			// reached the client.
			sendUntil := func(target int64) {
				deadline := time.Now().Add(5 * time.Second)
				for sent := f.sink.frames.Load(); f.sink.frames.Load() < target; {
					if time.Now().After(deadline) {
						t.Fatalf("only %d of %d frames relayed", f.sink.frames.Load(), target)
					}
					if sent-f.sink.frames.Load() >= 64 {
						time.Sleep(50 * time.Microsecond)
						sent = f.sink.frames.Load() + 32 // allow for drops
						continue
					}
					if _, err := src.WriteToUDPAddrPort(payload, to); err != nil {
						t.Fatal(err)
					}
					sent++
				}
			}
			const warm, count = 100, 2000
			sendUntil(warm)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := f.sink.frames.Load()
			sendUntil(start + count)
			runtime.ReadMemStats(&after)
			relayed := f.sink.frames.Load() - start
			// The test's own sends allocate nothing either; allow a few
			// stray runtime allocations, not one per packet.
			if perPacket := float64(after.Mallocs-before.Mallocs) / float64(relayed); perPacket > 0.05 {
				t.Errorf("%.3f allocations per relayed packet, want 0", perPacket)
			}
			want := int64(4 + 1004) // header + payload padded to 4
			switch {
			case !tc.channel && tc.v6:
				want = 20 + 24 + 4 + 1004 // STUN header, XOR-PEER-ADDRESS of IPv6, DATA
			case !tc.channel:
				want = 20 + 12 + 4 + 1004 // STUN header, XOR-PEER-ADDRESS, DATA
			case tc.transport == allocations.UDP:
				want = 4 + 1001
			}
			// A TCP client gets the frames of one receive batch in one
			// write: a whole number of frames. A TLS client gets a record
			// for each.
			if l := f.sink.last.Load(); l != want && (tc.transport != allocations.TCP || l%want != 0) {
				t.Errorf("frame length %d, want %d", l, want)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkRelayChannelData(b *testing.B) {
	f := newDataPathFixture(b, allocations.UDP)
	var got atomic.Int64
	go f.drainPeer(&got)
	pkt := channelDataPacket(f.chNum, 1200)
	tx := newTxRun(f.s)
	b.ReportAllocs()
	b.SetBytes(1200)
	for b.Loop() {
		f.s.relayChannelDataAt(f.ft, pkt, time.Now(), tx)
		tx.flush()
	}
}

func BenchmarkRelaySend(b *testing.B) {
	f := newDataPathFixture(b, allocations.UDP)
	var got atomic.Int64
	go f.drainPeer(&got)
	pkt := sendIndicationPacket(b, f.peerAddr(), 1200)
	var msg stun.Message
	tx := newTxRun(f.s)
	b.ReportAllocs()
	b.SetBytes(1200)
	for b.Loop() {
		f.s.relaySend(f.ft, pkt, &msg, tx)
		tx.flush()
	}
}

// TestStatsAndPolicyReload: traffic is counted per allocation and in the
// server totals, and a reloaded policy stops relaying to a peer that an
// earlier permission and channel still name.
func TestStatsAndPolicyReload(t *testing.T) {
	f := newDataPathFixture(t, allocations.UDP)
	var got atomic.Int64
	go f.drainPeer(&got)
	cd := channelDataPacket(f.chNum, 100)
	for range 10 {
		relayNow(f.s, f.ft, cd)
	}
	if p, b := f.a.ToPeer.Load(); p != 10 || b != 1000 {
		t.Fatalf("allocation counted %d packets, %d bytes to the peer; want 10, 1000", p, b)
	}
	st := f.s.Stats()
	if st.ToPeer.Packets != 10 || st.ToPeer.Bytes != 1000 || st.AllocationsActive != 1 {
		t.Fatalf("stats %+v", st)
	}

	f.s.SetPolicy(auth.NewPeerPolicy(nil, nil)) // loopback no longer allowed
	relayNow(f.s, f.ft, cd)
	if p, _ := f.a.ToPeer.Load(); p != 10 {
		t.Fatal("relayed to a peer the reloaded policy denies")
	}
	if d := f.s.Stats().Drops[DropPolicy.String()]; d != 1 {
		t.Fatalf("policy drops = %d, want 1", d)
	}
	relayNow(f.s, allocations.FiveTuple{Client: netip.MustParseAddrPort("127.0.0.9:1"), Server: f.ft.Server, Transport: allocations.UDP}, cd)
	if d := f.s.Stats().Drops[DropNoAllocation.String()]; d != 1 {
		t.Fatalf("no-allocation drops = %d, want 1", d)
	}

	// Totals survive the allocation's end and never go down.
	f.s.table.Delete(f.ft)
	st = f.s.Stats()
	if st.ToPeer.Packets != 10 || st.AllocationsActive != 0 || st.AllocationsEnded["deleted"] != 1 {
		t.Fatalf("after delete: %+v", st)
	}
}

// TestBandwidthLimit: an allocation limited to 100 kB/s passes its one-second
// burst of a fast stream and drops the rest, counted.
func TestBandwidthLimit(t *testing.T) {
	f := newDataPathFixture(t, allocations.UDP, func(c *Config) { c.AllocationBandwidth = 100_000 })
	var got atomic.Int64
	go f.drainPeer(&got)
	cd := channelDataPacket(f.chNum, 1000)
	start := time.Now()
	for range 300 {
		relayNow(f.s, f.ft, cd)
	}
	elapsed := time.Since(start)
	_, bytes := f.a.ToPeer.Load()
	// The burst, plus what refilled while sending (100 bytes per ms).
	maxBytes := 100_000 + uint64(elapsed.Milliseconds()+1)*100 + 1000
	if bytes < 100_000 || bytes > maxBytes {
		t.Fatalf("relayed %d bytes of 300 000 in %v, want 100 000..%d", bytes, elapsed, maxBytes)
	}
	if d := f.s.Stats().Drops[DropBandwidth.String()]; d < 150 {
		t.Fatalf("bandwidth drops = %d, want most of the excess", d)
	}
}

// relayNow relays one ChannelData message the way the UDP listener loop
// does: through a send run, flushed at once.
func relayNow(s *Server, ft allocations.FiveTuple, pkt []byte) {
	tx := newTxRun(s)
	s.relayChannelDataAt(ft, pkt, time.Now(), tx)
	tx.flush()
}

// mustOut is newUDPOut for tests.
func mustOut(tb testing.TB, conn *net.UDPConn) udpOut {
	tb.Helper()
	out, err := newUDPOut(conn)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
