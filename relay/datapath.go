package relay

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay/proto"
)

// The functions in this file are the data plane: they run once per relayed
// packet, take no lock and allocate nothing.

// sendIndicationType is the first two bytes of a Send indication
// (method 0x006, class indication).
const sendIndicationType = 0x0016

func isSendIndication(pkt []byte) bool {
	return len(pkt) >= 2 && binary.BigEndian.Uint16(pkt) == sendIndicationType
}

// relayChannelData forwards a client's ChannelData message to the peer bound
// to its channel (RFC 8656 §12.6). Anything else is dropped silently.
func (s *Server) relayChannelData(ft allocations.FiveTuple, pkt []byte) {
	number, payload, err := proto.ParseChannelData(pkt)
	if err != nil {
		s.stats.drop(DropMalformed)
		return
	}
	a := s.table.Get(ft)
	if a == nil {
		s.stats.drop(DropNoAllocation)
		return
	}
	// RFC 8656 §12.6: only the channel binding is checked ("If the
	// ChannelData message is received on a channel that is not bound to any
	// peer, then the message is silently discarded"), and nothing is
	// refreshed.
	peer, ok := a.ChannelPeer(number, time.Now())
	if !ok {
		s.stats.drop(DropNoPermission)
		return
	}
	s.writeToPeer(a, payload, peer)
}

// relaySend forwards the DATA of a client's Send indication to its
// XOR-PEER-ADDRESS when a permission exists (RFC 8656 §11.2). msg is the
// caller's scratch message; it is pointed at pkt, not copied.
func (s *Server) relaySend(ft allocations.FiveTuple, pkt []byte, msg *stun.Message) {
	a := s.table.Get(ft)
	if a == nil {
		s.stats.drop(DropNoAllocation)
		return
	}
	msg.Raw = pkt
	defer func() { msg.Raw = nil }() // never keep the caller's buffer
	if err := msg.Decode(); err != nil {
		s.stats.drop(DropMalformed)
		return
	}
	peer, err := proto.GetXORAddress(msg, stun.AttrXORPeerAddress)
	if err != nil {
		s.stats.drop(DropMalformed)
		return
	}
	data, err := msg.Get(stun.AttrData)
	if err != nil {
		s.stats.drop(DropMalformed)
		return
	}
	if !a.Permitted(peer.Addr(), time.Now()) {
		s.stats.drop(DropNoPermission)
		return
	}
	s.writeToPeer(a, data, peer)
}

// writeToPeer sends payload from the allocation's relay socket, if the peer
// policy (which may have been reloaded since the permission was made) still
// allows the peer.
func (s *Server) writeToPeer(a *allocations.Allocation, payload []byte, peer netip.AddrPort) {
	if !s.policy().Allowed(peer.Addr()) {
		s.stats.drop(DropPolicy)
		return
	}
	if _, err := a.Conn.WriteToUDPAddrPort(payload, peer); err != nil {
		s.stats.drop(DropWriteFailed)
		return
	}
	a.ToPeer.Add(len(payload))
}

// relayFromPeers reads the allocation's relay socket until the allocation
// is removed, and forwards what permitted peers send to the client: as
// ChannelData when the peer has a channel, else as a Data indication
// (RFC 8656 §11.3, §12.7). The header is written into headroom in front of
// the payload, so nothing is copied.
func (s *Server) relayFromPeers(a *allocations.Allocation) {
	const headroom = proto.DataIndicationHeadroom
	// Room for the largest datagram plus up to 3 bytes of padding.
	buf := make([]byte, headroom+maxDatagram+3)
	stream := a.FiveTuple.Transport != allocations.UDP
	rng := newRNG()
	for {
		n, from, err := a.Conn.ReadFromUDPAddrPort(buf[headroom : headroom+maxDatagram])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-a.Done():
				return
			default:
				continue
			}
		}
		from = unmapAddrPort(from)
		now := time.Now()
		if !a.Permitted(from.Addr(), now) {
			s.stats.drop(DropNoPermission) // RFC 8656 §11.3: silently discarded
			continue
		}
		var frame []byte
		if number, ok := a.PeerChannel(from, now); ok {
			// RFC 8656 §12.5: over TCP/TLS, padded to a multiple of 4.
			frame = proto.PutChannelData(buf[headroom-proto.ChannelDataHeaderSize:], number, n, stream)
		} else if frame = proto.PutDataIndication(buf, n, from, proto.NewTransactionID(rng)); frame == nil {
			s.stats.drop(DropTooLarge) // over 65504 bytes: no Data indication holds it
			continue
		}
		if err := a.Sink.WriteToClient(frame); err != nil {
			s.stats.drop(DropWriteFailed)
			continue
		}
		a.ToClient.Add(n)
	}
}

// newRNG returns a per-goroutine generator for Data indication transaction
// IDs, seeded from crypto/rand: unpredictable, and free of locks.
func newRNG() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}

// listenRelay binds a relay socket on ip from the port pool; with evenPort
// (RFC 8656 §7.2 EVEN-PORT) it keeps trying until the port is even.
func (s *Server) listenRelay(ip netip.Addr, evenPort bool) (*net.UDPConn, error) {
	const evenTries = 32
	for range evenTries {
		conn, err := s.ports.ListenUDP(ip)
		if err != nil {
			return nil, err
		}
		if !evenPort {
			return conn, nil
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if local.Port()%2 == 0 {
			return conn, nil
		}
		_ = conn.Close()
		s.ports.Release(local)
	}
	return nil, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: no even relay port free")
}
