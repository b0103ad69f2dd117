package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v4"
)

// AttrICMP is the ICMP attribute's type (RFC 8656 §18.13, IANA 0x8004),
// which pion/stun does not define. It is comprehension-optional.
const AttrICMP stun.AttrType = 0x8004

// icmpSize is the ICMP attribute's value length: 16 reserved bits, the type
// and the code in 16 bits, 32 bits of error data.
const icmpSize = 8

// Largest type and code the ICMP attribute holds (RFC 8656 Figure 11 draws
// a 7-bit type and a 9-bit code). Every ICMP error type RFC 8656 §11.5 lets
// through (3 and 11 for ICMPv4, 1 to 3 for ICMPv6) fits.
const (
	MaxICMPType = 1<<7 - 1
	MaxICMPCode = 1<<9 - 1
)

// ErrICMPRange reports an ICMP type or code too large for the attribute.
var ErrICMPRange = errors.New("proto: ICMP type or code out of range")

// ICMP is the ICMP attribute (RFC 8656 §18.13): "This attribute is used by
// servers to signal the reason a UDP packet was dropped."
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Reserved            |  ICMP Type  |    ICMP Code    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          Error Data                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The figure gives the type 7 bits (bits 16-22) and the code 9 (bits
// 23-31), and the layout here follows it bit for bit; an implementation
// that reads a byte each would see type 3 code 3 as type 6 code 3. "Reserved:
// This field MUST be set to 0 when sent and MUST be ignored when
// received."
type ICMP struct {
	Type uint8  // ICMP or ICMPv6 type (the XOR-PEER-ADDRESS family says which)
	Code uint16 // ICMP or ICMPv6 code
	// Data is the Error Data: "If the ICMPv6 type is 2 ("Packet too big"
	// message) or ICMPv4 type is 3 (Destination Unreachable) and Code is 4
	// (fragmentation needed and DF set), the Error Data field will be set
	// to the Maximum Transmission Unit of the next-hop link ... For other
	// ICMPv6 types and ICMPv4 types and codes, the Error Data field MUST be
	// set to zero."
	Data uint32
}

// put writes the attribute's value into v (icmpSize bytes).
func (i ICMP) put(v []byte) {
	v[0], v[1] = 0, 0
	binary.BigEndian.PutUint16(v[2:4], uint16(i.Type)<<9|i.Code)
	binary.BigEndian.PutUint32(v[4:8], i.Data)
}

// AddTo adds the ICMP attribute to m.
func (i ICMP) AddTo(m *stun.Message) error {
	if i.Type > MaxICMPType || i.Code > MaxICMPCode {
		return fmt.Errorf("proto: ICMP type %d code %d: %w", i.Type, i.Code, ErrICMPRange)
	}
	var v [icmpSize]byte
	i.put(v[:])
	m.Add(AttrICMP, v[:])
	return nil
}

// GetFrom decodes the ICMP attribute of m, which must be exactly 8 bytes.
func (i *ICMP) GetFrom(m *stun.Message) error {
	v, err := getExact(m, AttrICMP, icmpSize)
	if err != nil {
		return err
	}
	tc := binary.BigEndian.Uint16(v[2:4]) // v[0:2] is Reserved: ignored
	*i = ICMP{Type: uint8(tc >> 9), Code: tc & MaxICMPCode, Data: binary.BigEndian.Uint32(v[4:8])}
	return nil
}

// ICMPIndicationSize is the largest message PutICMPIndication writes: STUN
// header, XOR-PEER-ADDRESS of an IPv6 peer, ICMP.
const ICMPIndicationSize = stunHeaderSize + attrHeaderSize + xorAddrSize6 + attrHeaderSize + icmpSize

// PutICMPIndication writes into buf (at least ICMPIndicationSize bytes) the
// Data indication that reports an ICMP error about peer (RFC 8656 §11.5):
// "The Data indication MUST contain both an XOR-PEER-ADDRESS and an ICMP
// attribute." It carries no DATA (§18.4: "If the ICMP attribute is not
// present in a Data indication, it contains a DATA attribute"), and, like
// PutDataIndication, no FINGERPRINT. It returns the message, a prefix of
// buf, or nil when peer is invalid or icmp out of range. HOT: allocates
// nothing.
func PutICMPIndication(buf []byte, peer netip.AddrPort, icmp ICMP, txID [stun.TransactionIDSize]byte) []byte {
	if !peer.Addr().IsValid() || icmp.Type > MaxICMPType || icmp.Code > MaxICMPCode {
		return nil
	}
	_ = buf[ICMPIndicationSize-1] // the documented panic when buf is short
	be := binary.BigEndian
	off := stunHeaderSize
	n := putXORAddress(buf[off+attrHeaderSize:], peer, &txID)
	be.PutUint16(buf[off:], uint16(stun.AttrXORPeerAddress))
	be.PutUint16(buf[off+2:], uint16(n))
	off += attrHeaderSize + n
	be.PutUint16(buf[off:], uint16(AttrICMP))
	be.PutUint16(buf[off+2:], icmpSize)
	icmp.put(buf[off+attrHeaderSize:])
	end := off + attrHeaderSize + icmpSize

	be.PutUint16(buf[0:], dataIndicationType)
	be.PutUint16(buf[2:], uint16(end-stunHeaderSize))
	be.PutUint32(buf[4:], magicCookie)
	copy(buf[8:stunHeaderSize], txID[:])
	return buf[:end]
}
