package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

const (
	// maxListenerSockets caps the SO_REUSEPORT sockets of one UDP listener.
	maxListenerSockets = 16
	// listenerBufSize is asked for as SO_RCVBUF and SO_SNDBUF of listener
	// sockets, which carry every client's media: the kernel's 208 KiB
	// default holds only ~250 small datagrams, and a burst beyond that is
	// dropped. The kernel caps it at net.core.rmem_max / wmem_max.
	listenerBufSize = 4 << 20
	// listenerBatch is how many datagrams one recvmmsg reads.
	listenerBatch = 32
)

// udpListener is one bound UDP listener: several SO_REUSEPORT sockets on
// one address, each with its own reader goroutine. The kernel spreads
// clients over them by a hash of the 4-tuple, so one client always reaches
// the same socket, and answers leave through the socket the request came in on.
type udpListener struct {
	s       *Server
	socks   []*udpSocket
	local   netip.AddrPort // identifies the listener in 5-tuples
	relayIP relayIPs
}

// udpSocket is one socket of a UDP listener.
type udpSocket struct {
	l   *udpListener
	out udpOut
}

// udpRequest is a STUN request copied off a UDP listener for a worker.
type udpRequest struct {
	sock *udpSocket
	from netip.AddrPort
	data []byte
}

// udpSink writes to one client through the listener socket it came in on.
type udpSink struct {
	out  udpOut
	addr netip.AddrPort
}

// WriteToClient sends one datagram to the client. It is for answers to
// requests; relayed data goes in the relay loop's send runs.
func (u *udpSink) WriteToClient(frame []byte) error {
	if u.out.unpolled {
		// A full send buffer drops the answer (the client retransmits):
		// no readiness event would end a wait (uring_linux.go).
		return udpio.NewSender().Send(u.out.socket(), frame, nil, u.addr)
	}
	_, err := u.out.conn.WriteToUDPAddrPort(frame, u.addr)
	return err
}

// listenUDP binds spec's address udpio.Sockets times with SO_REUSEPORT
// (min(GOMAXPROCS, 16) on Linux, once elsewhere); the first bind picks the
// port when spec asks for port 0.
func (s *Server) listenUDP(spec ListenSpec, relayIP relayIPs) (*udpListener, error) {
	n := udpio.Sockets(maxListenerSockets)
	var lc net.ListenConfig
	if n > 1 {
		lc.Control = udpio.ReusePort
	}
	l := &udpListener{s: s, relayIP: relayIP}
	addr := spec.Addr
	closeAll := func() {
		for _, so := range l.socks {
			_ = so.out.conn.Close()
		}
	}
	for i := range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			closeAll()
			if i > 0 {
				return nil, fmt.Errorf("listener %s: socket %d of %d with SO_REUSEPORT: %w", spec, i+1, n, err)
			}
			return nil, bindError(spec, err)
		}
		conn := pc.(*net.UDPConn)
		if i == 0 {
			l.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
			// The next sockets join this one: same address (not a host
			// name resolved again), same port.
			addr = l.local.String()
		}
		// Best effort: the kernel caps these at rmem_max/wmem_max.
		_ = conn.SetReadBuffer(listenerBufSize)
		_ = conn.SetWriteBuffer(listenerBufSize)
		out, err := newUDPOut(conn)
		if err != nil {
			_ = conn.Close()
			closeAll()
			return nil, fmt.Errorf("listener %s: %w", spec, err)
		}
		l.socks = append(l.socks, &udpSocket{l: l, out: out})
	}
	s.mu.Lock()
	s.bound = append(s.bound, BoundListener{Kind: UDP, Addr: l.socks[0].out.conn.LocalAddr()})
	s.udpListeners = append(s.udpListeners, l)
	for _, so := range l.socks {
		s.closers = append(s.closers, so.out.conn.Close)
	}
	s.mu.Unlock()
	return l, nil
}

// serve reads every socket of the listener until they are closed.
func (l *udpListener) serve() {
	var wg sync.WaitGroup
	for _, so := range l.socks[1:] {
		wg.Go(so.serve)
	}
	l.socks[0].serve()
	wg.Wait()
}

// serve reads the socket until it is closed, a batch of datagrams
// (recvmmsg) at a time. ChannelData and Send indications are relayed right
// here (data plane), the ChannelData of one batch gathered into runs per
// allocation and peer that leave in one GSO send each; requests go to the
// worker pool so that media never waits behind authentication or a bind.
func (so *udpSocket) serve() {
	r := &listenerReader{so: so, b: newRxBatch(listenerBatch, 0), tx: newTxRun(so.l.s)}
	r.b.Zones = so.l.s.zones
	if q := so.l.s.quic; q != nil {
		r.quic = q.reader(so)
	}
	if r.quic == nil && so.l.s.uring != nil && so.l.s.uring.serveListener(so, r) {
		return // read by an io_uring reactor until closed (uring_linux.go)
	}
	so.l.s.readUntilClosed(so.out.conn, r, false, nil)
}

// newRxBatch is a receive batch of slots datagrams of any size, with
// headroom for a header in front of each and 3 bytes behind it for a
// stream's padding (RFC 8656 §12.5), read in place.
func newRxBatch(slots, headroom int) *udpio.Batch {
	return udpio.NewBatch(slots, headroom, udpio.MaxDatagram, 3)
}

// readUntilClosed runs udpio.ReadLoop until the socket is closed or done is
// closed. A socket error that is not transient (ReadLoop has skipped those)
// is logged and retried after a pause, so a broken socket costs a log line a
// second instead of a spinning core.
func (s *Server) readUntilClosed(conn *net.UDPConn, r udpio.Reader, probe bool, done <-chan struct{}) {
	var lastLog time.Time
	for {
		err := udpio.ReadLoop(conn, r, probe)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case <-done:
			return
		default:
		}
		if now := time.Now(); now.Sub(lastLog) >= time.Second {
			lastLog = now
			s.log.Warn("UDP socket read failed; retrying", "socket", conn.LocalAddr().String(), "err", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listenerReader is the state of one listener socket's reader. Its batch
// is its own: a listener is always busy.
type listenerReader struct {
	so  *udpSocket
	b   *udpio.Batch
	tx  *txRun
	msg stun.Message // reused for Send indications
	// quic forwards what is not TURN to the QUIC backend (quic.go); nil
	// when QUIC sharing is off.
	quic *quicReader
}

// Acquire, Release and Handle make a listenerReader a udpio.Reader.
func (r *listenerReader) Acquire() *udpio.Batch { return r.b }
func (r *listenerReader) Release(*udpio.Batch)  {}
func (r *listenerReader) Handle(*udpio.Batch)   { r.relay() }

// relay handles one batch.
func (r *listenerReader) relay() {
	l, s, b := r.so.l, r.so.l.s, r.b
	now := time.Now() // one clock read per batch
	for i := range b.N {
		pkt, from, ok := b.Msg(i)
		if !ok || len(pkt) == 0 {
			continue
		}
		ft := allocations.FiveTuple{Client: from, Server: l.local, Transport: allocations.UDP}
		switch proto.Classify(pkt[0]) {
		case proto.KindChannelData:
			// With QUIC sharing, 64-79 is also a QUIC short header:
			// ChannelData only from a client with an allocation (quic.go).
			if r.quic != nil {
				r.quic.channelData(ft, pkt, now, r.tx)
				continue
			}
			s.relayChannelDataAt(ft, pkt, now, r.tx)
		case proto.KindSTUN:
			if r.quic != nil && r.quic.notSTUN(ft.Client, pkt, now) {
				continue
			}
			if isSendIndication(pkt) {
				s.relaySend(ft, pkt, &r.msg, r.tx) // joins the run: the client's order is kept
				continue
			}
			req := udpRequest{sock: r.so, from: ft.Client, data: append([]byte(nil), pkt...)}
			select {
			case s.requests <- req:
			default: // overloaded: drop, the client retransmits
				s.stats.drop(DropOverload)
			}
		default:
			if r.quic != nil {
				r.quic.other(ft.Client, pkt, now)
			}
		}
	}
	r.tx.flush()
}

// requestWorker answers UDP requests until the queue is closed.
func (s *Server) requestWorker() {
	var req, resp stun.Message
	for r := range s.requests {
		req.Raw = append(req.Raw[:0], r.data...)
		if err := req.Decode(); err != nil {
			continue
		}
		ft := allocations.FiveTuple{Client: r.from, Server: r.sock.l.local, Transport: allocations.UDP}
		sink := &udpSink{out: r.sock.out, addr: r.from}
		s.handleRequest(&req, &resp, ft, sink, r.sock.l.relayIP)
	}
}

// unmapAddrPort turns an IPv4-mapped IPv6 address into plain IPv4, so that
// one client has one 5-tuple whatever socket family carried it.
func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
