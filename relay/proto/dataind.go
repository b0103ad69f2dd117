package proto

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/pion/stun/v4"
)

// Data indication layout. RFC 8656 §11.3: "the server forms and sends a Data
// indication. The Data indication MUST contain both an XOR-PEER-ADDRESS and a
// DATA attribute." With an IPv6 peer the header is 20 (STUN) + 24
// (XOR-PEER-ADDRESS) + 4 (DATA header) = 48 bytes, the same 48 bytes RFC 8656
// §13.2 budgets for "the overhead of a Data indication"; an IPv4 peer needs
// 12 fewer, so the message then starts at buf[12].
const (
	// DataIndicationHeadroom is the room PutDataIndication needs in front of
	// the payload. Relay loops read peer datagrams into
	// buf[DataIndicationHeadroom:], which also leaves room for a ChannelData
	// header, so neither framing copies the payload.
	DataIndicationHeadroom = stunHeaderSize + attrHeaderSize + xorAddrSize6 + attrHeaderSize

	// MaxDataIndicationPayload is the largest payload PutDataIndication
	// accepts: the STUN length field (16 bits, a multiple of 4) must hold
	// XOR-PEER-ADDRESS (24 bytes for IPv6), the DATA header and the padded
	// payload: 65532 - 24 - 4 = 65504.
	MaxDataIndicationPayload = 0xFFFC - (attrHeaderSize + xorAddrSize6) - attrHeaderSize

	stunHeaderSize = 20
	attrHeaderSize = 4

	// dataIndicationType is method Data (0x007) with class indication (C1=0,
	// C0=1 at bit 4), RFC 8489 §5 Figure 3.
	dataIndicationType = 0x0017
)

// PutDataIndication turns a peer datagram into a Data indication in place
// (RFC 8656 §11.3). The payload already sits at
// buf[DataIndicationHeadroom : DataIndicationHeadroom+payloadLen] and buf must
// hold DataIndicationHeadroom+payloadLen+3 bytes. It writes the STUN header
// (Data indication, given transaction ID), XOR-PEER-ADDRESS for peer (an
// IPv4-mapped peer is encoded as IPv4) and the DATA header immediately before
// the payload, zeroes the 0-3 padding bytes after it (STUN attributes are
// padded to 4, RFC 8489 §14) and returns the whole message, a sub-slice of
// buf. No FINGERPRINT is added: RFC 8656 §11.3 does not require one and the
// client needs none to demultiplex.
//
// It returns nil if payloadLen is negative or above MaxDataIndicationPayload
// or peer is invalid; the caller drops the datagram. It panics if buf is too
// short. HOT: allocates nothing.
func PutDataIndication(buf []byte, payloadLen int, peer netip.AddrPort, txID [12]byte) (frame []byte) {
	if payloadLen < 0 || payloadLen > MaxDataIndicationPayload || !peer.Addr().IsValid() {
		return nil
	}
	padded := PaddedLen(payloadLen)
	end := DataIndicationHeadroom + padded
	_ = buf[end-1] // one bounds check, and the documented panic when buf is short
	clear(buf[DataIndicationHeadroom+payloadLen : end])

	// Write the attributes backwards from the payload: DATA header, then
	// XOR-PEER-ADDRESS, whose size decides where the message starts.
	dataHdr := DataIndicationHeadroom - attrHeaderSize
	binary.BigEndian.PutUint16(buf[dataHdr:], uint16(stun.AttrData))
	binary.BigEndian.PutUint16(buf[dataHdr+2:], uint16(payloadLen))

	var v [xorAddrSize6]byte
	n := putXORAddress(v[:], peer, &txID)
	peerHdr := dataHdr - n - attrHeaderSize
	binary.BigEndian.PutUint16(buf[peerHdr:], uint16(stun.AttrXORPeerAddress))
	binary.BigEndian.PutUint16(buf[peerHdr+2:], uint16(n))
	copy(buf[peerHdr+attrHeaderSize:dataHdr], v[:n])

	// RFC 8489 §5: type, length (attributes only, multiple of 4), magic
	// cookie, transaction ID.
	start := peerHdr - stunHeaderSize
	binary.BigEndian.PutUint16(buf[start:], dataIndicationType)
	binary.BigEndian.PutUint16(buf[start+2:], uint16(end-peerHdr))
	binary.BigEndian.PutUint32(buf[start+4:], magicCookie)
	copy(buf[start+8:peerHdr], txID[:])
	return buf[start:end]
}

// NewTransactionID returns a 96-bit transaction ID drawn from rng without
// allocating. RFC 8489 §5 wants transaction IDs "uniformly and randomly
// chosen"; ChaCha8 is a CSPRNG when seeded from crypto/rand. rng is not safe
// for concurrent use: keep one per goroutine (e.g. per relay loop).
func NewTransactionID(rng *rand.ChaCha8) (id [stun.TransactionIDSize]byte) {
	binary.BigEndian.PutUint64(id[0:8], rng.Uint64())
	binary.BigEndian.PutUint32(id[8:12], uint32(rng.Uint64()))
	return id
}
