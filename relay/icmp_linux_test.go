package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay/proto"
)

// recordingSink keeps a copy of every frame sent to the client. With block,
// a write waits until block is closed.
type recordingSink struct {
	block   chan struct{}
	waiting atomic.Bool // a write waits on block
	mu      sync.Mutex
	frames  [][]byte
}

func (r *recordingSink) WriteToClient(b []byte) error {
	if r.block != nil {
		r.waiting.Store(true)
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, append([]byte(nil), b...))
	return nil
}

func (r *recordingSink) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.frames...)
}

// icmpIndications returns the ICMP attribute and peer of every Data
// indication among frames that carries one.
func icmpIndications(t *testing.T, frames [][]byte) (icmps []proto.ICMP, peers []netip.AddrPort) {
	t.Helper()
	for _, f := range frames {
		if proto.Classify(f[0]) != proto.KindSTUN {
			continue
		}
		m := &stun.Message{Raw: f}
		if err := m.Decode(); err != nil {
			t.Fatalf("undecodable frame: %v", err)
		}
		var icmp proto.ICMP
		if icmp.GetFrom(m) != nil {
			continue
		}
		if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || m.Contains(stun.AttrData) {
			t.Fatalf("ICMP in %v (with DATA: %v)", m.Type, m.Contains(stun.AttrData))
		}
		peer, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
		if err != nil {
			t.Fatalf("ICMP indication without XOR-PEER-ADDRESS: %v", err)
		}
		icmps, peers = append(icmps, icmp), append(peers, peer)
	}
	return icmps, peers
}

// closedPort returns a loopback UDP address nothing listens on: a datagram
// to it draws an ICMP port unreachable.
func closedPort(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = c.Close()
	return ap
}

// TestICMPOnlyForPermittedPeers: RFC 8656 §11.5, an ICMP error is relayed
// only when the destination of the datagram it is about has a permission,
// and (icmp_linux.go) at most icmpBurst at once.
func TestICMPOnlyForPermittedPeers(t *testing.T) {
	f := newDataPathFixture(t, allocations.TCP) // permission for 127.0.0.1 only
	rec := &recordingSink{}
	f.a.Sink = rec
	go f.s.relayFromPeers(f.a)

	// From the relay socket itself, past the permission checks of the
	// client→peer path, to a peer without a permission.
	stranger := closedPort(t, "127.0.0.2")
	if _, err := f.a.Conn.WriteToUDPAddrPort([]byte("x"), stranger); err != nil {
		t.Fatal(err)
	}
	// Then to a permitted one: its error comes after the stranger's.
	permitted := closedPort(t, "127.0.0.1")
	time.Sleep(20 * time.Millisecond)
	if _, err := f.a.Conn.WriteToUDPAddrPort([]byte("y"), permitted); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "an ICMP indication", func() bool { return len(rec.all()) > 0 })
	time.Sleep(50 * time.Millisecond)
	icmps, peers := icmpIndications(t, rec.all())
	if len(icmps) != 1 || peers[0] != permitted || icmps[0] != (proto.ICMP{Type: 3, Code: 3}) {
		t.Fatalf("got ICMP indications %+v about %v, want one type 3 code 3 about %v", icmps, peers, permitted)
	}

	// A burst of errors: at most the budget reaches the client.
	start := time.Now()
	for range 4 * icmpBurst {
		_, _ = f.a.Conn.WriteToUDPAddrPort([]byte("z"), permitted) // a pending error may fail one
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(100 * time.Millisecond)
	icmps, _ = icmpIndications(t, rec.all())
	budget := icmpBurst + int(time.Since(start)/icmpInterval) + 1
	if len(icmps) < 2 || len(icmps) > budget {
		t.Fatalf("%d ICMP indications after a burst of %d errors, want 2..%d", len(icmps), 4*icmpBurst, budget)
	}
}

// TestSendAfterICMPError: the first send after an ICMP error arrives on a
// relay socket fails with that error and sends nothing; txRun.send sends
// again, and flags the error queue, which the relay loop then reads: when
// it starts (its first look at the socket) or when it is done with what it
// was doing when the sender took the error.
func TestSendAfterICMPError(t *testing.T) {
	// takeError has a send through txRun take the ICMP error of a datagram
	// to a closed port, and returns the port.
	takeError := func(t *testing.T, f *dataPathFixture) netip.AddrPort {
		t.Helper()
		out := udpOut{conn: f.a.Conn, raw: f.a.Raw, errs: &f.a.ErrQueued}
		tx := newTxRun(f.s)
		closed := closedPort(t, "127.0.0.1")
		if !tx.sendOne(out, closed, nil, []byte("x"), 1) {
			t.Fatal("first send failed")
		}
		// Wait for the port unreachable: the socket's pending error.
		turntest.WaitFor(t, "the ICMP error", func() bool { return pollErr(t, f.a.Conn) })
		if !tx.sendOne(out, f.peerAddr(), nil, []byte("after"), 5) {
			t.Fatal("send after the ICMP error failed")
		}
		_ = f.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		if n, err := f.peer.Read(buf); err != nil || string(buf[:n]) != "after" {
			t.Fatalf("peer got %q, %v; want \"after\"", buf[:n], err)
		}
		if !f.a.ErrQueued.Load() {
			t.Fatal("ErrQueued not set by the send that took the error")
		}
		return closed
	}
	wantICMP := func(t *testing.T, rec *recordingSink, closed netip.AddrPort) {
		t.Helper()
		turntest.WaitFor(t, "an ICMP indication", func() bool {
			icmps, _ := icmpIndications(t, rec.all())
			return len(icmps) == 1
		})
		if _, peers := icmpIndications(t, rec.all()); peers[0] != closed {
			t.Fatalf("ICMP indication about %v, want %v", peers[0], closed)
		}
	}

	t.Run("loop starts after", func(t *testing.T) {
		f := newDataPathFixture(t, allocations.TCP)
		rec := &recordingSink{}
		f.a.Sink = rec
		closed := takeError(t, f)
		go f.s.relayFromPeers(f.a)
		wantICMP(t, rec, closed)
	})

	t.Run("loop busy meanwhile", func(t *testing.T) {
		f := newDataPathFixture(t, allocations.TCP)
		rec := &recordingSink{block: make(chan struct{})}
		f.a.Sink = rec
		go f.s.relayFromPeers(f.a)
		time.Sleep(20 * time.Millisecond) // the loop waits on the socket
		// A datagram from the peer holds the loop in the client's write
		// while the sender takes the error.
		if _, err := f.peer.WriteToUDPAddrPort([]byte("hold"), f.a.Relayed); err != nil {
			t.Fatal(err)
		}
		turntest.WaitFor(t, "the loop to write to the client", func() bool { return rec.waiting.Load() })
		closed := takeError(t, f)
		close(rec.block)
		wantICMP(t, rec, closed)
	})
}

// pollErr reports whether poll(2) says conn has an error (POLLERR), which
// unlike a read leaves the error pending.
func pollErr(t *testing.T, conn *net.UDPConn) bool {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var revents int16
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		if _, err := unix.Poll(fds, 0); err == nil {
			revents = fds[0].Revents
		}
	}); err != nil {
		t.Fatal(err)
	}
	return revents&unix.POLLERR != 0
}

func TestICMPBudget(t *testing.T) {
	var q icmpReader
	now := int64(time.Hour)
	for i := range icmpBurst {
		if !q.allow(now) {
			t.Fatalf("error %d of a burst refused", i+1)
		}
	}
	if q.allow(now) {
		t.Fatal("error past the burst allowed")
	}
	if !q.allow(now + int64(icmpInterval)) {
		t.Fatal("refused an interval later")
	}
	if q.allow(now + int64(icmpInterval)) {
		t.Fatal("two allowed an interval later")
	}
}

// TestSendDontFragmentAllocatesNothing: a Send indication with
// DONT-FRAGMENT costs nothing per packet once DF is set (the first one sets
// it, dontfrag.go).
func TestSendDontFragmentAllocatesNothing(t *testing.T) {
	f := newDataPathFixture(t, allocations.UDP)
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		setterFunc(func(m *stun.Message) error { return proto.AddXORAddress(m, stun.AttrXORPeerAddress, f.peerAddr()) }),
		proto.DontFragment{}, proto.Data(make([]byte, 1200)))
	if err != nil {
		t.Fatal(err)
	}
	var msg stun.Message
	tx := newTxRun(f.s)
	f.s.relaySend(f.ft, m.Raw, &msg, tx)
	tx.flush()
	if !f.a.DontFragment.Load() {
		t.Fatal("DF not set by a Send indication with DONT-FRAGMENT")
	}
	if n := testing.AllocsPerRun(1000, func() { f.s.relaySend(f.ft, m.Raw, &msg, tx); tx.flush() }); n != 0 {
		t.Errorf("Send indication with DONT-FRAGMENT: %v allocations per packet, want 0", n)
	}
}
