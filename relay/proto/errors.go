package proto

import "errors"

// Sentinel errors. The HOT decoders (ParseChannelData, GetXORAddress) return
// them unwrapped so that failing costs no allocation; everything else wraps
// them with context, so compare with errors.Is.
var (
	// ErrNotTURN means the bytes are neither a STUN message nor ChannelData:
	// wrong first byte (RFC 7983), bad magic cookie, a STUN length that is not
	// a multiple of 4, or a channel number outside 0x4000-0x4FFF. A stream
	// that produced it cannot be resynchronised and should be closed.
	ErrNotTURN = errors.New("proto: not a STUN or ChannelData message")

	// ErrTruncated means a message or attribute is shorter than its header
	// or its length field says.
	ErrTruncated = errors.New("proto: truncated message")

	// ErrBadChannelNumber means a ChannelData message or CHANNEL-NUMBER
	// names a channel outside 0x4000-0x4FFF (RFC 8656 §12).
	ErrBadChannelNumber = errors.New("proto: channel number outside 0x4000-0x4FFF")

	// ErrBadAddressFamily means an XOR address attribute carries a family
	// other than 0x01 (IPv4) or 0x02 (IPv6), or an address that is not
	// valid for encoding.
	ErrBadAddressFamily = errors.New("proto: bad address family")

	// ErrBadAddressLength means an XOR address attribute's length does not
	// match its family (8 bytes for IPv4, 20 for IPv6).
	ErrBadAddressLength = errors.New("proto: bad address length")
)
