package main

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay/proto"
)

// Every payload starts with a 16-byte header the peers echo unchanged:
// the flow index, a sequence number and the send time in nanoseconds since
// the run's epoch, all little-endian. The rest is zero.
const payloadHeader = 16

// Message types and attributes the data path writes and reads by hand.
const (
	sendIndication = 0x0016 // method Send (0x006), class indication
	dataIndication = 0x0017 // method Data (0x007), class indication
	stunHeaderLen  = 20
	attrXORPeer    = 0x0012
	attrData       = 0x0013
	magicCookie    = 0x2112A442
)

// frameSpec says how the client frames its payloads: ChannelData
// (RFC 8656 §12.4) or Send indications (§11.1), padded to 4 bytes on
// streams (§12.5).
type frameSpec struct {
	size        int // payload bytes
	indications bool
	stream      bool
}

// frameLen is the length of one client frame on the wire.
func (s frameSpec) frameLen() int {
	if s.indications {
		return s.payloadOff() + proto.PaddedLen(s.size)
	}
	if s.stream {
		return proto.ChannelDataHeaderSize + proto.PaddedLen(s.size)
	}
	return proto.ChannelDataHeaderSize + s.size
}

// payloadOff is where the payload starts in a client frame: after the
// ChannelData header, or after the STUN header, an IPv4 XOR-PEER-ADDRESS
// (4+8) and the DATA attribute header.
func (s frameSpec) payloadOff() int {
	if s.indications {
		return stunHeaderLen + 4 + 8 + 4
	}
	return proto.ChannelDataHeaderSize
}

// fill writes the frame header for f into dst (frameLen bytes) and zeroes
// the payload; stamp then sets the per-packet fields.
func (s frameSpec) fill(dst []byte, f *flow) {
	clear(dst)
	if !s.indications {
		proto.PutChannelDataHeader(dst, f.channel, s.size)
		binary.LittleEndian.PutUint32(dst[s.payloadOff():], f.idx)
		return
	}
	binary.BigEndian.PutUint16(dst[0:], sendIndication)
	binary.BigEndian.PutUint16(dst[2:], uint16(s.frameLen()-stunHeaderLen))
	binary.BigEndian.PutUint32(dst[4:], magicCookie)
	binary.LittleEndian.PutUint32(dst[8:], f.idx) // transaction ID: flow, 0, seq
	// XOR-PEER-ADDRESS, IPv4 (RFC 8489 §14.2).
	a := dst[stunHeaderLen:]
	binary.BigEndian.PutUint16(a[0:], attrXORPeer)
	binary.BigEndian.PutUint16(a[2:], 8)
	a[5] = 0x01
	binary.BigEndian.PutUint16(a[6:], f.peerAddr.Port()^uint16(magicCookie>>16))
	ip := f.peerAddr.Addr().Unmap().As4()
	binary.BigEndian.PutUint32(a[8:], binary.BigEndian.Uint32(ip[:])^magicCookie)
	d := a[12:]
	binary.BigEndian.PutUint16(d[0:], attrData)
	binary.BigEndian.PutUint16(d[2:], uint16(s.size))
	binary.LittleEndian.PutUint32(dst[s.payloadOff():], f.idx)
}

// stamp sets the sequence number and send time of a filled frame.
func (s frameSpec) stamp(frame []byte, seq uint32, sent int64) {
	p := frame[s.payloadOff():]
	binary.LittleEndian.PutUint32(p[4:], seq)
	binary.LittleEndian.PutUint64(p[8:], uint64(sent))
	if s.indications {
		binary.LittleEndian.PutUint32(frame[16:], seq)
	}
}

// clientPayload returns the payload of a frame the client received:
// ChannelData or, with indications, a Data indication's DATA.
func clientPayload(b []byte) ([]byte, bool) {
	if len(b) < 4 {
		return nil, false
	}
	if proto.Classify(b[0]) == proto.KindChannelData {
		n := int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return nil, false
		}
		return b[4 : 4+n], true
	}
	if len(b) < stunHeaderLen || binary.BigEndian.Uint16(b) != dataIndication {
		return nil, false
	}
	end := min(len(b), stunHeaderLen+int(binary.BigEndian.Uint16(b[2:])))
	for off := stunHeaderLen; off+4 <= end; {
		t := binary.BigEndian.Uint16(b[off:])
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+n > end {
			return nil, false
		}
		if t == attrData {
			return b[off+4 : off+4+n], true
		}
		off += 4 + proto.PaddedLen(n)
	}
	return nil, false
}

// payloadSent returns the send time stamped in a payload, if it has one.
func payloadSent(p []byte) (int64, bool) {
	if len(p) < payloadHeader {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(p[8:])), true
}

// flow is one allocation with its client and peer.
type flow struct {
	idx      uint32
	channel  uint16
	relayed  netip.AddrPort // the allocation's relayed address
	peerAddr netip.AddrPort // the peer's own address (XOR-PEER-ADDRESS)

	client, peer int    // raw sockets (UDP data path)
	sendBuf      []byte // frames filled for this flow, gsoSegments of them
	seq          uint32
	inflight     int
	lastRecv     int64
}

// xorPeer is the XOR-PEER-ADDRESS setter for control requests.
func xorPeer(ap netip.AddrPort) stun.Setter { return xorAddr{stun.AttrXORPeerAddress, ap} }
