package relay

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

// Most of this file is the data plane: run once per relayed packet, it takes
// no lock and allocates nothing in steady state (receive batches and send
// runs come from a cache and go back to it).

// sendIndicationType is the first two bytes of a Send indication
// (method 0x006, class indication).
const sendIndicationType = 0x0016

func isSendIndication(pkt []byte) bool {
	return len(pkt) >= 2 && binary.BigEndian.Uint16(pkt) == sendIndicationType
}

// relayChannelDataAt forwards a client's ChannelData message to the peer
// bound to its channel (RFC 8656 §12.6), at the caller's clock reading.
// Anything else is dropped silently. With a txRun the payload joins the run
// (sent when the run is flushed), else it is sent at once.
func (s *Server) relayChannelDataAt(ft allocations.FiveTuple, pkt []byte, now time.Time, tx *txRun) {
	if a, number, payload, ok := s.channelDataAllocation(ft, pkt); ok {
		s.relayChannelDataOf(a, number, payload, now, tx)
	}
}

// channelDataAllocation parses a client's ChannelData message and finds
// its allocation, counting what it drops.
func (s *Server) channelDataAllocation(ft allocations.FiveTuple, pkt []byte) (a *allocations.Allocation, number uint16, payload []byte, ok bool) {
	number, payload, err := proto.ParseChannelData(pkt)
	if err != nil {
		s.stats.drop(DropMalformed)
		return nil, 0, nil, false
	}
	if a = s.table.Get(ft); a == nil {
		s.stats.drop(DropNoAllocation)
		return nil, 0, nil, false
	}
	return a, number, payload, true
}

// relayChannelDataOf is relayChannelDataAt once the allocation is found
// (QUIC sharing looks it up first, quic.go).
func (s *Server) relayChannelDataOf(a *allocations.Allocation, number uint16, payload []byte, now time.Time, tx *txRun) {
	// RFC 8656 §12.6: only the channel binding is checked ("If the
	// ChannelData message is received on a channel that is not bound to any
	// peer, then the message is silently discarded"), and nothing is
	// refreshed.
	if peer, ok := s.channelPeer(a, number, now); ok {
		s.writeToPeer(a, payload, peer, now, tx)
	}
}

// channelPeer is the peer bound to the allocation's channel, if the
// binding is live; the datagram is dropped (and counted) if not.
func (s *Server) channelPeer(a *allocations.Allocation, number uint16, now time.Time) (netip.AddrPort, bool) {
	peer, ok := a.ChannelPeer(number, now)
	if !ok {
		s.stats.drop(DropNoPermission)
	}
	return peer, ok
}

// streamRuns relays the ChannelData and Send indications of one TCP/TLS
// client in GSO runs: it borrows a send run from the server's cache while
// frames are buffered and gives it back on flush, which the caller does
// before it may block reading.
type streamRuns struct {
	s  *Server
	pb *peerBatch
}

// tx returns the borrowed send run, borrowing it first if need be.
func (r *streamRuns) tx() *txRun {
	if r.pb == nil {
		r.pb = r.s.peerBatches.get(r.s)
	}
	return r.pb.tx
}

func (r *streamRuns) relay(ft allocations.FiveTuple, frame []byte) {
	r.s.relayChannelDataAt(ft, frame, time.Now(), r.tx())
}

func (r *streamRuns) flush() {
	if r.pb != nil {
		r.pb.tx.flush()
		r.s.peerBatches.put(r.pb)
		r.pb = nil
	}
}

// relaySend forwards the DATA of a client's Send indication to its
// XOR-PEER-ADDRESS when a permission exists (RFC 8656 §11.2), as part of
// tx's run. msg is the caller's scratch message; it is pointed at pkt, not
// copied.
func (s *Server) relaySend(ft allocations.FiveTuple, pkt []byte, msg *stun.Message, tx *txRun) {
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
	now := time.Now()
	if !a.Permitted(peer.Addr(), now) || a.TCP != nil { // a TCP allocation has no relay socket (RFC 6062)
		s.stats.drop(DropNoPermission)
		return
	}
	if !s.dontFragmentOK(a, msg) {
		s.stats.drop(DropMalformed) // RFC 8656 §11.2: as if DONT-FRAGMENT were unknown (dontfrag.go)
		return
	}
	s.writeToPeer(a, data, peer, now, tx)
}

// writeToPeer sends payload from the allocation's relay socket, if the peer
// policy (which may have been reloaded since the permission was made) still
// allows the peer and the bandwidth limits have room, as part of tx's run.
func (s *Server) writeToPeer(a *allocations.Allocation, payload []byte, peer netip.AddrPort, now time.Time, tx *txRun) {
	if !s.admitToPeer(a, peer, len(payload), s.mono(now)) {
		return
	}
	// RFC 8656 §11.2: "the source transport address is the relayed
	// transport address of the allocation": of a dual allocation, the one
	// of the peer's family.
	conn, raw, errs := a.ConnFor(peer.Addr())
	tx.add(udpOut{conn: conn, raw: raw, errs: errs}, peer, &a.ToPeer, payload, len(payload))
}

// admitToPeer reports whether n payload bytes may go to peer: the peer
// policy (and own addresses, self.go) re-checked per packet, then the
// bandwidth limits, whose drop it counts.
func (s *Server) admitToPeer(a *allocations.Allocation, peer netip.AddrPort, n int, mono int64) bool {
	if !s.allowPeer(peer) {
		return false
	}
	if !a.AllowToPeer(n, mono) {
		s.stats.drop(DropBandwidth)
		return false
	}
	return true
}

// relayFromPeers reads one of the allocation's relay sockets (a dual
// allocation has two, each with its own loop) until it is closed or the
// allocation is removed, and forwards what permitted peers send to the client: as
// ChannelData when the peer has a channel, else as a Data indication
// (RFC 8656 §11.3, §12.7). The header is written into headroom in front of
// the payload, so nothing is copied on its way in.
//
// The goroutine holds no buffer while it waits: only when the socket is
// readable does it take a receive batch from the server's pool, read what
// is queued (recvmmsg), forward it and give the batch back. An idle
// allocation costs its goroutine's stack, not 64 KiB of buffer. To a UDP
// client, frames of one batch leave in GSO runs (one send for many).
func (s *Server) relayFromPeers(a *allocations.Allocation) { s.relayFromSocket(a, a.Conn) }

// relayFromSocket is relayFromPeers for one relay socket of a: Conn, or
// the IPv6 half's of a dual allocation.
func (s *Server) relayFromSocket(a *allocations.Allocation, conn *net.UDPConn) {
	p := &peerReader{s: s, a: a, rng: newRNG(), stream: a.FiveTuple.Transport != allocations.UDP, errs: &a.ErrQueued}
	if a.Half6 != nil && conn == a.Half6.Conn {
		p.errs = &a.Half6.ErrQueued
	}
	switch sink := a.Sink.(type) {
	case *udpSink:
		p.udp = sink
	case *streamSink:
		p.streamSink = sink
	}
	if s.uring != nil && p.udp != nil && s.uring.serve(p, conn) {
		return // io_uring (uring_linux.go) served the socket until the allocation ended
	}
	s.readUntilClosed(conn, p, true, a.Done())
}

// peerReader is the state of one allocation's relay loop.
type peerReader struct {
	s      *Server
	a      *allocations.Allocation
	rng    *rand.ChaCha8
	stream bool     // TCP/TLS client: pad ChannelData
	udp    *udpSink // the client's sink when it is UDP
	// streamSink is the client's sink when it is TCP/TLS (a test may give
	// another kind: then frames go through the ClientSink interface).
	streamSink *streamSink
	pb         *peerBatch // borrowed while the socket is readable
	tx         *txRun     // pb's send run
	// Frames staged in tx.buf for a TCP/TLS client.
	staged, stagedFrames, stagedPayload int
	// icmp reads the relay socket's error queue; made on the first ICMP
	// error (icmp_linux.go). errs is the socket's flag that a sender took
	// an error pending on it (Allocation.ErrQueued, or the IPv6 half's).
	icmp *icmpReader
	errs *atomic.Bool
}

// Acquire borrows a receive batch and a send run from the server's cache.
// With Release and Handle it makes a peerReader a udpio.Reader (and on
// Linux, with ErrorsQueued and ReadErrors, a udpio.ErrorQueue).
func (p *peerReader) Acquire() *udpio.Batch {
	p.pb = p.s.peerBatches.get(p.s)
	if p.pb.rx == nil {
		// No zones (rx.Zones nil): peer addresses carry none in TURN
		// (XOR-PEER-ADDRESS), so permissions hold none either; a
		// link-local peer is on the relay socket's own link.
		p.pb.rx = newRxBatch(peerBatchSlots, proto.DataIndicationHeadroom)
	}
	p.tx = p.pb.tx
	return p.pb.rx
}

// Release gives them back.
func (p *peerReader) Release(*udpio.Batch) {
	p.s.peerBatches.put(p.pb)
	p.pb, p.tx = nil, nil
}

// Handle forwards a batch.
func (p *peerReader) Handle(b *udpio.Batch) { p.forward(b) }

// forward relays one batch to the client.
func (p *peerReader) forward(b *udpio.Batch) {
	s, a := p.s, p.a
	const headroom = proto.DataIndicationHeadroom
	now := time.Now() // one clock read per batch
	mono := s.mono(now)
	for i := range b.N {
		pkt, from, ok := b.Msg(i)
		if !ok {
			continue
		}
		n := len(pkt)
		permitted, number, bound := a.Route(from, now)
		switch {
		case !permitted:
			s.stats.drop(DropNoPermission) // RFC 8656 §11.3: silently discarded
			continue
		case !s.allowPeer(from): // a reload may have denied the peer since its permission
			continue
		case !bound && n > proto.MaxDataIndicationPayload:
			s.stats.drop(DropTooLarge) // no Data indication holds it
			continue
		case !a.AllowToClient(n, mono):
			s.stats.drop(DropBandwidth)
			continue
		}
		buf := b.Bufs[i]
		var frame []byte
		if bound {
			// RFC 8656 §12.5: over TCP/TLS, padded to a multiple of 4.
			frame = proto.PutChannelData(buf[headroom-proto.ChannelDataHeaderSize:], number, n, p.stream)
		} else if frame = proto.PutDataIndication(buf, n, from, proto.NewTransactionID(p.rng)); frame == nil {
			s.stats.drop(DropMalformed) // an address PutDataIndication cannot encode
			continue
		}
		if p.udp != nil {
			p.tx.add(p.udp.out, p.udp.addr, &a.ToClient, frame, n)
			continue
		}
		// A TCP/TLS client: the batch's frames leave in one system call
		// instead of one each (to TLS, a record per frame all the same:
		// see streamSink.writeFrames).
		if p.staged+len(frame) > len(p.tx.buf) {
			p.flushStream()
		}
		if len(frame) > len(p.tx.buf) {
			p.writeStream(frame, 1, n)
			continue
		}
		p.staged += copy(p.tx.buf[p.staged:], frame)
		p.stagedFrames++
		p.stagedPayload += n
	}
	if p.udp != nil {
		p.tx.flush()
	} else {
		p.flushStream()
	}
}

// flushStream writes the frames staged for a TCP/TLS client.
func (p *peerReader) flushStream() {
	if p.stagedFrames > 0 {
		p.writeStream(p.tx.buf[:p.staged], p.stagedFrames, p.stagedPayload)
	}
	p.staged, p.stagedFrames, p.stagedPayload = 0, 0, 0
}

// writeStream writes frames (count of them, payload bytes in all) to the
// client and counts them.
func (p *peerReader) writeStream(frames []byte, count, payload int) {
	var err error
	if p.streamSink != nil && count > 1 {
		if p.pb.records == nil {
			p.pb.records = make([]byte, 0, recordsBufSize)
		}
		p.pb.records, err = p.streamSink.writeFrames(frames, p.pb.records)
	} else {
		err = p.a.Sink.WriteToClient(frames)
	}
	if err != nil {
		for range count {
			p.s.stats.drop(DropWriteFailed)
		}
		return
	}
	p.a.ToClient.AddN(uint64(count), uint64(payload))
}

// peerBatch is what a relay loop borrows while it forwards: receive
// buffers and a send run. Pooled, so memory follows the number of loops
// busy at once, not the number of allocations. TCP/TLS connections borrow
// one for its send run only; the receive buffers (1 MiB) are made when a
// relay loop first needs them.
type peerBatch struct {
	rx *udpio.Batch // nil until a relay loop borrows the batch
	tx *txRun
	// records gathers the TLS records of one batch to a TLS client (see
	// streamSink.writeFrames); nil until one needs it.
	records []byte
}

// recordsBufSize holds the frames of one receive batch (at most
// peerBatchSlots, staged in at most udpio.MaxGSOBytes), each sealed in a TLS
// record of its own: TLS adds up to 29 bytes of header, nonce and tag per
// record (TLS 1.2 AES-GCM; TLS 1.3 adds 22). More leave in more writes.
const recordsBufSize = udpio.MaxGSOBytes + peerBatchSlots*64

// peerBatchSlots is how many datagrams a relay loop reads per recvmmsg.
const peerBatchSlots = 16

func (s *Server) newPeerBatch() *peerBatch {
	return &peerBatch{tx: newTxRun(s)}
}

// batchCache lends peerBatches to relay loops. It is a few slots swapped
// atomically: lock-free, kept across garbage collections (sync.Pool is
// emptied by them, and drops items on purpose under the race detector,
// which would make a 1 MiB allocation look like part of the data path).
type batchCache struct {
	slots []atomic.Pointer[peerBatch]
	made  atomic.Uint64 // batches allocated so far
}

func newBatchCache() *batchCache {
	return &batchCache{slots: make([]atomic.Pointer[peerBatch], 2*runtime.GOMAXPROCS(0)+8)}
}

// get returns a cached batch or a new one.
func (c *batchCache) get(s *Server) *peerBatch {
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			if b := c.slots[i].Swap(nil); b != nil {
				return b
			}
		}
	}
	c.made.Add(1)
	return s.newPeerBatch()
}

// put caches b if a slot is free (else the garbage collector takes it).
func (c *batchCache) put(b *peerBatch) {
	for i := range c.slots {
		if c.slots[i].CompareAndSwap(nil, b) {
			return
		}
	}
}

// mono turns now into nanoseconds on the monotonic clock since the server
// was made, for the bandwidth limiters.
func (s *Server) mono(now time.Time) int64 { return int64(now.Sub(s.epoch)) }

// newRNG returns a per-goroutine generator for Data indication transaction
// IDs, seeded from crypto/rand: unpredictable, and free of locks.
func newRNG() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}
