package uring

import "encoding/binary"

// RecvMsgOutSize is sizeof(struct io_uring_recvmsg_out), the header of
// each buffer a multishot RECVMSG fills.
const RecvMsgOutSize = 16

// MsgTrunc is MSG_TRUNC in RecvMsg.Flags: the datagram was longer than
// the buffer's payload room and was cut.
const MsgTrunc = 0x20

// RecvMsg is one datagram as a multishot RECVMSG lays it out in a
// provided buffer: struct io_uring_recvmsg_out, then namelen bytes
// reserved for the source address, controllen bytes for control data,
// then the payload.
type RecvMsg struct {
	// Namelen is the source address's real length, Controllen the
	// control data's, PayloadLen the datagram's before any truncation.
	Namelen, Controllen, PayloadLen, Flags uint32
	// Name is the source address (at most the reserved length), Payload
	// the datagram (cut to the buffer).
	Name, Payload []byte
	// PayloadOffset is where Payload starts in the buffer.
	PayloadOffset int
}

// ParseRecvMsg reads the first used bytes of buf (the completion's
// result) laid out with nameRoom and controlRoom reserved (the request
// msghdr's msg_namelen and msg_controllen). ok is false when the sizes do
// not fit together, which the kernel never writes.
func ParseRecvMsg(buf []byte, used, nameRoom, controlRoom int) (m RecvMsg, ok bool) {
	if used < 0 || used > len(buf) || nameRoom < 0 || controlRoom < 0 {
		return RecvMsg{}, false
	}
	buf = buf[:used]
	head := RecvMsgOutSize + nameRoom + controlRoom
	if len(buf) < head {
		return RecvMsg{}, false
	}
	m.Namelen = binary.NativeEndian.Uint32(buf[0:])
	m.Controllen = binary.NativeEndian.Uint32(buf[4:])
	m.PayloadLen = binary.NativeEndian.Uint32(buf[8:])
	m.Flags = binary.NativeEndian.Uint32(buf[12:])
	if m.Controllen > uint32(controlRoom) {
		return RecvMsg{}, false
	}
	m.Name = buf[RecvMsgOutSize : RecvMsgOutSize+min(int(m.Namelen), nameRoom)]
	m.PayloadOffset = head
	m.Payload = buf[head:]
	if uint32(len(m.Payload)) > m.PayloadLen {
		return RecvMsg{}, false
	}
	return m, true
}

// Truncated reports whether the datagram did not fit its buffer.
func (m *RecvMsg) Truncated() bool {
	return m.Flags&MsgTrunc != 0 || uint32(len(m.Payload)) < m.PayloadLen
}
