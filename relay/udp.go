package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay/proto"
)

// maxDatagram is the largest UDP payload there is.
const maxDatagram = 65535

// udpListener is one bound UDP listener.
type udpListener struct {
	s       *Server
	conn    *net.UDPConn
	local   netip.AddrPort // identifies the listener in 5-tuples
	relayIP netip.Addr
}

// udpRequest is a STUN request copied off a UDP listener for a worker.
type udpRequest struct {
	l    *udpListener
	from netip.AddrPort
	data []byte
}

// udpSink writes to one client through the listener socket it came in on.
type udpSink struct {
	conn *net.UDPConn
	addr netip.AddrPort
}

// WriteToClient sends one datagram to the client.
func (u *udpSink) WriteToClient(frame []byte) error {
	_, err := u.conn.WriteToUDPAddrPort(frame, u.addr)
	return err
}

func (s *Server) listenUDP(spec ListenSpec, relayIP netip.Addr) (*udpListener, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(context.Background(), "udp", spec.Addr)
	if err != nil {
		return nil, bindError(spec, err)
	}
	conn := pc.(*net.UDPConn)
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s.mu.Lock()
	s.bound = append(s.bound, BoundListener{Kind: UDP, Addr: conn.LocalAddr()})
	s.closers = append(s.closers, conn.Close)
	s.mu.Unlock()
	return &udpListener{s: s, conn: conn, local: local, relayIP: relayIP}, nil
}

// serve reads the listener until it is closed. ChannelData and Send
// indications are relayed right here (data plane); requests go to the
// worker pool so that media never waits behind authentication or a bind.
func (l *udpListener) serve() {
	buf := make([]byte, maxDatagram)
	var msg stun.Message // reused for Send indications
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a truncated datagram; the socket is still fine
		}
		if n == 0 {
			continue
		}
		pkt := buf[:n]
		ft := allocations.FiveTuple{Client: unmapAddrPort(from), Server: l.local, Transport: allocations.UDP}
		switch proto.Classify(pkt[0]) {
		case proto.KindChannelData:
			l.s.relayChannelData(ft, pkt)
		case proto.KindSTUN:
			if isSendIndication(pkt) {
				l.s.relaySend(ft, pkt, &msg)
				continue
			}
			req := udpRequest{l: l, from: ft.Client, data: append([]byte(nil), pkt...)}
			select {
			case l.s.requests <- req:
			default: // overloaded: drop, the client retransmits
				l.s.stats.drop(DropOverload)
			}
		}
	}
}

// requestWorker answers UDP requests until the queue is closed.
func (s *Server) requestWorker() {
	var req, resp stun.Message
	for r := range s.requests {
		req.Raw = append(req.Raw[:0], r.data...)
		if err := req.Decode(); err != nil {
			continue
		}
		ft := allocations.FiveTuple{Client: r.from, Server: r.l.local, Transport: allocations.UDP}
		sink := &udpSink{conn: r.l.conn, addr: r.from}
		s.handleRequest(&req, &resp, ft, sink, r.l.relayIP)
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
