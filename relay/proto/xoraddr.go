package proto

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v4"
)

// magicCookie is the fixed STUN magic cookie (RFC 8489 §5).
const magicCookie = 0x2112A442

// XOR address family codes and value sizes (RFC 8489 §14.1, §14.2).
const (
	xorFamilyIPv4 = 0x01
	xorFamilyIPv6 = 0x02
	xorAddrSize4  = 4 + 4  // reserved, family, X-Port, X-Address(32)
	xorAddrSize6  = 4 + 16 // reserved, family, X-Port, X-Address(128)
)

// putXORAddress writes the XOR-encoded value of ap into v (which must hold
// xorAddrSize6 bytes) and returns its length. ap must be valid; an
// IPv4-mapped IPv6 address is encoded as IPv4.
//
// RFC 8489 §14.2: "X-Port is computed by XOR'ing the mapped port with the
// most significant 16 bits of the magic cookie. If the IP address family is
// IPv4, X-Address is computed by XOR'ing the mapped IP address with the magic
// cookie. If the IP address family is IPv6, X-Address is computed by XOR'ing
// the mapped IP address with the concatenation of the magic cookie and the
// 96-bit transaction ID."
func putXORAddress(v []byte, ap netip.AddrPort, txID *[stun.TransactionIDSize]byte) int {
	ip := ap.Addr().Unmap()
	v[0] = 0 // RFC 8489 §14.1: the first 8 bits MUST be set to 0
	binary.BigEndian.PutUint16(v[2:4], ap.Port()^(magicCookie>>16))
	if ip.Is4() {
		v[1] = xorFamilyIPv4
		a := ip.As4()
		binary.BigEndian.PutUint32(v[4:8], binary.BigEndian.Uint32(a[:])^magicCookie)
		return xorAddrSize4
	}
	v[1] = xorFamilyIPv6
	a := ip.As16()
	binary.BigEndian.PutUint32(v[4:8], binary.BigEndian.Uint32(a[0:4])^magicCookie)
	// XOR the remaining 96 bits with the transaction ID a word at a time.
	be := binary.BigEndian
	be.PutUint64(v[8:16], be.Uint64(a[4:12])^be.Uint64(txID[0:8]))
	be.PutUint32(v[16:20], be.Uint32(a[12:16])^be.Uint32(txID[8:12]))
	return xorAddrSize6
}

// AddXORAddress adds ap to m as the XOR address attribute t
// (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS or XOR-MAPPED-ADDRESS), XOR-ed with
// m.TransactionID, which must already be set. IPv4-mapped IPv6 addresses are
// encoded as IPv4, so the peer sees the address family it expects; an IPv6
// zone is dropped.
func AddXORAddress(m *stun.Message, t stun.AttrType, ap netip.AddrPort) error {
	if !ap.Addr().IsValid() {
		return fmt.Errorf("proto: %s: invalid address: %w", t, ErrBadAddressFamily)
	}
	var v [xorAddrSize6]byte
	n := putXORAddress(v[:], ap, &m.TransactionID)
	m.Add(t, v[:n])
	return nil
}

// GetXORAddress decodes the XOR address attribute t of m. IPv4 addresses are
// returned unmapped (Is4); an IPv6-family value is returned as sent, even
// when it is IPv4-mapped, so the peer policy sees what the client asked for.
// The value must be exactly 8 (IPv4) or 20 (IPv6) bytes. HOT: allocates nothing, and on failure returns
// stun.ErrAttributeNotFound, ErrBadAddressFamily or ErrBadAddressLength
// unwrapped.
func GetXORAddress(m *stun.Message, t stun.AttrType) (netip.AddrPort, error) {
	a, ok := m.Attributes.Get(t)
	if !ok {
		return netip.AddrPort{}, stun.ErrAttributeNotFound
	}
	v := a.Value
	if len(v) < 4 {
		return netip.AddrPort{}, ErrBadAddressLength
	}
	// v[0] is reserved: RFC 8489 §14.1 "MUST be ignored by receivers".
	port := binary.BigEndian.Uint16(v[2:4]) ^ (magicCookie >> 16)
	switch v[1] {
	case xorFamilyIPv4:
		if len(v) != xorAddrSize4 {
			return netip.AddrPort{}, ErrBadAddressLength
		}
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], binary.BigEndian.Uint32(v[4:8])^magicCookie)
		return netip.AddrPortFrom(netip.AddrFrom4(ip), port), nil
	case xorFamilyIPv6:
		if len(v) != xorAddrSize6 {
			return netip.AddrPort{}, ErrBadAddressLength
		}
		var ip [16]byte
		binary.BigEndian.PutUint32(ip[0:4], binary.BigEndian.Uint32(v[4:8])^magicCookie)
		be := binary.BigEndian
		be.PutUint64(ip[4:12], be.Uint64(v[8:16])^be.Uint64(m.TransactionID[0:8]))
		be.PutUint32(ip[12:16], be.Uint32(v[16:20])^be.Uint32(m.TransactionID[8:12]))
		return netip.AddrPortFrom(netip.AddrFrom16(ip), port), nil
	default:
		return netip.AddrPort{}, ErrBadAddressFamily
	}
}
