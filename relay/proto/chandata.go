package proto

import (
	"encoding/binary"
	"fmt"
	"math"
)

// ChannelDataHeaderSize is the size of the ChannelData header: a 16-bit
// channel number and a 16-bit length (RFC 8656 §12.4).
const ChannelDataHeaderSize = 4

// MaxChannelDataPayload is the largest payload a ChannelData length field
// can describe.
const MaxChannelDataPayload = math.MaxUint16

// PaddedLen rounds n up to a multiple of 4, the STUN attribute and
// stream ChannelData alignment (RFC 8489 §14, RFC 8656 §12.5).
func PaddedLen(n int) int {
	return (n + 3) &^ 3
}

// ParseChannelData splits the ChannelData message b into its channel number
// and payload (RFC 8656 §12.4). The payload aliases b. Bytes beyond the
// length field are ignored: "Over UDP, the padding is not required but MAY be
// included." HOT: allocates nothing, and returns ErrTruncated or
// ErrBadChannelNumber unwrapped.
func ParseChannelData(b []byte) (number uint16, payload []byte, err error) {
	if len(b) < ChannelDataHeaderSize {
		return 0, nil, ErrTruncated
	}
	number = binary.BigEndian.Uint16(b[0:2])
	if !ChannelNumber(number).Valid() {
		return 0, nil, ErrBadChannelNumber
	}
	// "The Length field specifies the length in bytes of the application
	// data field (i.e., it does not include the size of the ChannelData
	// header)." Compared as int so it cannot wrap.
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-ChannelDataHeaderSize {
		return 0, nil, ErrTruncated
	}
	return number, b[ChannelDataHeaderSize : ChannelDataHeaderSize+n], nil
}

// PutChannelDataHeader writes the 4-byte ChannelData header for a payload of
// payloadLen bytes on channel number into b[0:4]. HOT: allocates nothing. It
// panics if b is shorter than 4 bytes or payloadLen is outside
// [0, MaxChannelDataPayload]: both are the caller's bugs, since a datagram
// read into a bounded buffer cannot exceed the limit.
func PutChannelDataHeader(b []byte, number uint16, payloadLen int) {
	if payloadLen < 0 || payloadLen > MaxChannelDataPayload {
		panic(fmt.Sprintf("proto: ChannelData payload length %d out of range", payloadLen))
	}
	_ = b[3] // one bounds check
	binary.BigEndian.PutUint16(b[0:2], number)
	binary.BigEndian.PutUint16(b[2:4], uint16(payloadLen))
}

// PutChannelData completes a ChannelData message in place: the payload
// already sits at buf[4:4+payloadLen]; it writes the header into buf[0:4]
// and, if pad is set (TCP and TLS clients, RFC 8656 §12.5: "the ChannelData
// message MUST be padded to a multiple of four bytes"), zero padding after
// the payload. It returns the message to send. buf must hold
// 4+PaddedLen(payloadLen) bytes when padding, 4+payloadLen otherwise. HOT:
// allocates nothing; panics like PutChannelDataHeader.
func PutChannelData(buf []byte, number uint16, payloadLen int, pad bool) []byte {
	PutChannelDataHeader(buf, number, payloadLen)
	end := ChannelDataHeaderSize + payloadLen
	if pad {
		padded := ChannelDataHeaderSize + PaddedLen(payloadLen)
		clear(buf[end:padded])
		end = padded
	}
	return buf[:end]
}
