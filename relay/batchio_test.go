package relay

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay/proto"
)

// Tests of the batched UDP data path: the listener's recvmmsg loop with
// GSO runs towards peers, the relay loops' batches towards clients, and
// txRun on its own. They run a real listener on 127.0.0.1.

// batchFixture is a started server with one UDP listener and one
// allocation, made by hand, for a client socket and a peer socket.
type batchFixture struct {
	s      *Server
	a      *allocations.Allocation
	client *net.UDPConn // connected to the listener
	peer   *net.UDPConn // connected to the relayed address
	chNum  uint16
}

func newBatchFixture(t testing.TB) *batchFixture {
	t.Helper()
	au, err := auth.New(auth.Config{Realm: "batch", Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Listeners:         []ListenSpec{{Kind: UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              au,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		// The peer is on 127.0.0.1, an own address: at an ephemeral port,
		// which the own-address rule (self.go) allows inside the relay range.
		RelayPorts: allocations.PortRange{Low: 32768, High: 65535},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.Wait() })
	listener := s.Addrs()[0].Addr.(*net.UDPAddr)
	client, err := net.DialUDP("udp4", nil, listener)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	relayConn, err := s.ports.ListenUDP(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	relayed := relayConn.LocalAddr().(*net.UDPAddr).AddrPort()
	peer, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(relayed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	var sock *udpSocket
	for _, so := range s.udpSockets() {
		sock = so // with several SO_REUSEPORT sockets any will do for sending
	}
	f := &batchFixture{s: s, client: client, peer: peer, chNum: 0x4002}
	f.a = &allocations.Allocation{
		FiveTuple: allocations.FiveTuple{
			Client:    client.LocalAddr().(*net.UDPAddr).AddrPort(),
			Server:    listener.AddrPort(),
			Transport: allocations.UDP,
		},
		Username: "u", User: "u", Relayed: relayed, Conn: relayConn, Raw: mustOut(t, relayConn).raw,
		Sink: &udpSink{out: sock.out, addr: client.LocalAddr().(*net.UDPAddr).AddrPort()},
	}
	if err := s.table.Create(f.a, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := f.a.BindChannel(f.chNum, peer.LocalAddr().(*net.UDPAddr).AddrPort(), time.Now()); err != nil {
		t.Fatal(err)
	}
	s.relays.Go(func() { s.relayFromPeers(f.a) })
	return f
}

// udpSockets lists the sockets of every UDP listener (test helper).
func (s *Server) udpSockets() []*udpSocket {
	var out []*udpSocket
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.udpListeners {
		out = append(out, l.socks...)
	}
	return out
}

// stamp writes seq into the first 4 bytes of payload.
func stamp(payload []byte, seq int) { binary.BigEndian.PutUint32(payload, uint32(seq)) }

// receiveAll reads datagrams from c until want arrived or a pause of 2 s,
// and checks each one's length and sequence number against sizes.
func receiveAll(t *testing.T, c *net.UDPConn, sizes []int, header int) {
	t.Helper()
	buf := make([]byte, 70000)
	for i, want := range sizes {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(sizes), err)
		}
		if n != header+want {
			t.Fatalf("datagram %d: %d bytes, want %d", i, n, header+want)
		}
		if got := int(binary.BigEndian.Uint32(buf[header:])); got != i {
			t.Fatalf("datagram %d carries sequence %d: reordered or lost", i, got)
		}
	}
}

// burstSizes is a burst that exercises every way a run ends: equal sizes
// (one GSO send), a shorter one that closes a run, a longer one that
// starts a new run, more than maxGSOSegments, and sizes over maxGSOSegment
// sent alone.
func burstSizes() []int {
	var sizes []int
	for range 70 {
		sizes = append(sizes, 300)
	}
	sizes = append(sizes, 100, 300, 300, 1452, 1453, 4000, 4000, 20, 20, 20)
	for range 5 {
		sizes = append(sizes, 1200)
	}
	return sizes
}

func TestListenerRunsToPeer(t *testing.T) {
	f := newBatchFixture(t)
	sizes := burstSizes()
	for i, n := range sizes {
		pkt := make([]byte, proto.ChannelDataHeaderSize+n)
		proto.PutChannelDataHeader(pkt, f.chNum, n)
		stamp(pkt[proto.ChannelDataHeaderSize:], i)
		if _, err := f.client.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	receiveAll(t, f.peer, sizes, 0)
	// The counter is bumped after the send returns: the peer can see the
	// last datagram first.
	waitFor(t, func() bool { p, _ := f.a.ToPeer.Load(); return p == uint64(len(sizes)) }, "ToPeer to count every packet")
}

func TestRelayLoopRunsToClient(t *testing.T) {
	f := newBatchFixture(t)
	sizes := burstSizes()
	for i, n := range sizes {
		payload := make([]byte, n)
		stamp(payload, i)
		if _, err := f.peer.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	receiveAll(t, f.client, sizes, proto.ChannelDataHeaderSize)
	waitFor(t, func() bool { p, _ := f.a.ToClient.Load(); return p == uint64(len(sizes)) }, "ToClient to count every packet")
}

// TestListenerAllocatesNothing drives the real listener loop (recvmmsg,
// batch clock, GSO runs) and counts heap allocations per relayed packet.
func TestListenerAllocatesNothing(t *testing.T) {
	f := newBatchFixture(t)
	const size = 200
	pkt := make([]byte, proto.ChannelDataHeaderSize+size)
	proto.PutChannelDataHeader(pkt, f.chNum, size)
	buf := make([]byte, 2048)
	// Bursts of 16, each read back at the peer, so that nothing is dropped
	// and the listener sees real batches.
	relay := func(bursts int) {
		for range bursts {
			for range 16 {
				if _, err := f.client.Write(pkt); err != nil {
					t.Fatal(err)
				}
			}
			for range 16 {
				_ = f.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := f.peer.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	relay(20) // warm up: batch cache, runtime
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	relay(100)
	runtime.ReadMemStats(&after)
	if perPacket := float64(after.Mallocs-before.Mallocs) / 1600; perPacket > 0.05 {
		t.Errorf("%.3f allocations per relayed packet, want 0", perPacket)
	}
}

// TestTxRun sends runs to two destinations by hand and checks what arrives.
func TestTxRun(t *testing.T) {
	f := newBatchFixture(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx := newTxRun(f.s)
	out := mustOut(t, f.a.Conn)
	var ctr allocations.Counter
	to := f.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	otherTo := other.LocalAddr().(*net.UDPAddr).AddrPort()
	sizes := burstSizes()
	var otherSizes []int
	for i, n := range sizes {
		d := make([]byte, n)
		stamp(d, i)
		tx.add(out, to, &ctr, d, n)
		if i%10 == 0 { // interleave a second destination: it splits runs
			d := make([]byte, 64)
			stamp(d, len(otherSizes))
			otherSizes = append(otherSizes, 64)
			tx.add(out, otherTo, &ctr, d, 64)
		}
	}
	tx.flush()
	tx.flush() // nothing left: no-op
	receiveAll(t, f.peer, sizes, 0)
	receiveAll(t, other, otherSizes, 0)
	if p, _ := ctr.Load(); p != uint64(len(sizes)+len(otherSizes)) {
		t.Errorf("counted %d packets, want %d", p, len(sizes)+len(otherSizes))
	}
}

// TestIdleAllocationHoldsNoBuffer checks that relay loops borrow their
// receive buffers only while forwarding: idle loops take no batch at all,
// and their heap is far below one 64 KiB buffer each. (HeapAlloc is
// process-wide, so the bound is loose: other tests' leftovers allocate too.)
func TestIdleAllocationHoldsNoBuffer(t *testing.T) {
	f := newBatchFixture(t)
	var before, after runtime.MemStats
	// Batches lent and given back stay cached (about 1 MiB each, shared
	// by all loops): leave them out of the count.
	dropCached := func() {
		for i := range f.s.peerBatches.slots {
			f.s.peerBatches.slots[i].Store(nil)
		}
	}
	dropCached()
	runtime.GC()
	runtime.ReadMemStats(&before)
	made := f.s.peerBatches.made.Load()
	const n = 1000
	for range n {
		// 127.0.0.2: no stray datagram from another test can reach these.
		conn, err := f.s.ports.ListenUDP(netip.MustParseAddr("127.0.0.2"))
		if err != nil {
			t.Fatal(err)
		}
		a := &allocations.Allocation{Conn: conn, Raw: mustOut(t, conn).raw, Sink: f.a.Sink, FiveTuple: f.a.FiveTuple}
		f.s.relays.Go(func() { f.s.relayFromPeers(a) })
		t.Cleanup(func() { _ = conn.Close() })
	}
	time.Sleep(200 * time.Millisecond) // let the loops park
	if got := f.s.peerBatches.made.Load() - made; got != 0 {
		t.Errorf("idle relay loops made %d receive batches, want 0", got)
	}
	dropCached()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perLoop := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap per idle relay loop", perLoop)
	if perLoop > 16<<10 {
		t.Errorf("%d bytes of heap per idle relay loop, want far less than a 64 KiB buffer", perLoop)
	}
}

// TestNoStall sends single packets each way, one at a time, and checks each
// arrives at once: a loop that missed a readiness event would hold a packet
// until the next one arrived.
func TestNoStall(t *testing.T) {
	f := newBatchFixture(t)
	pkt := make([]byte, proto.ChannelDataHeaderSize+100)
	proto.PutChannelDataHeader(pkt, f.chNum, 100)
	buf := make([]byte, 2048)
	var worst time.Duration
	for i := range 300 {
		start := time.Now()
		if i%2 == 0 {
			if _, err := f.client.Write(pkt); err != nil {
				t.Fatal(err)
			}
			_ = f.peer.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := f.peer.Read(buf); err != nil {
				t.Fatalf("packet %d to the peer: %v", i, err)
			}
		} else {
			if _, err := f.peer.Write(pkt[4:]); err != nil {
				t.Fatal(err)
			}
			_ = f.client.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := f.client.Read(buf); err != nil {
				t.Fatalf("packet %d to the client: %v", i, err)
			}
		}
		worst = max(worst, time.Since(start))
		if i%7 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("worst one-way delay %v", worst)
}

// TestListenerSockets checks the SO_REUSEPORT group: min(GOMAXPROCS, 16)
// sockets on one port, and clients spread over them all answered through
// the socket they reached.
func TestListenerSockets(t *testing.T) {
	f := newBatchFixture(t)
	socks := f.s.udpSockets()
	if want := min(runtime.GOMAXPROCS(0), maxListenerSockets); len(socks) != want {
		t.Errorf("%d sockets, want %d", len(socks), want)
	}
	for _, so := range socks {
		if got := so.out.conn.LocalAddr().(*net.UDPAddr).AddrPort(); got != socks[0].l.local {
			t.Errorf("socket on %v, want %v", got, socks[0].l.local)
		}
	}
	for i := range 16 {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(socks[0].l.local))
		if err != nil {
			t.Fatal(err)
		}
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		_ = c.Close()
		if err != nil {
			t.Fatalf("client %d: no Binding response: %v", i, err)
		}
		resp := &stun.Message{Raw: buf[:n]}
		if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess || resp.TransactionID != req.TransactionID {
			t.Fatalf("client %d: response %v, %v", i, resp.Type, err)
		}
	}
}

// BenchmarkTxRun sends 1200-byte datagrams to a loopback peer in runs of
// 32 (one GSO send each) and one by one (GSO off), for the cost per
// datagram; run with -benchmem to see that neither allocates.
func BenchmarkTxRun(b *testing.B) {
	for _, tc := range []struct {
		name string
		gso  bool
	}{{"gso", true}, {"single", false}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newBatchFixture(b)
			f.s.gsoOff.Store(!tc.gso)
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer peer.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, err := peer.Read(buf); err != nil {
						return
					}
				}
			}()
			to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			tx := newTxRun(f.s)
			out := mustOut(b, f.a.Conn)
			var ctr allocations.Counter
			d := make([]byte, 1200)
			b.SetBytes(int64(len(d)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				tx.add(out, to, &ctr, d, len(d))
				if i%32 == 31 {
					tx.flush()
					time.Sleep(0) // let the reader keep up
				}
			}
			tx.flush()
		})
	}
}
