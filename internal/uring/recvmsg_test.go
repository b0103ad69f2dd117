package uring

import (
	"encoding/binary"
	"testing"
)

func recvMsgBuf(namelen, controllen, payloadLen, flags uint32, nameRoom, controlRoom, payload int) []byte {
	b := make([]byte, RecvMsgOutSize+nameRoom+controlRoom+payload)
	binary.NativeEndian.PutUint32(b[0:], namelen)
	binary.NativeEndian.PutUint32(b[4:], controllen)
	binary.NativeEndian.PutUint32(b[8:], payloadLen)
	binary.NativeEndian.PutUint32(b[12:], flags)
	return b
}

func TestParseRecvMsg(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		buf                   []byte
		used, nameRoom, ctl   int
		ok, trunc             bool
		payload, off, nameLen int
	}{
		{"ipv4", recvMsgBuf(16, 0, 5, 0, 28, 4, 5), 53, 28, 4, true, false, 5, 48, 16},
		{"ipv6 empty", recvMsgBuf(28, 0, 0, 0, 28, 4, 0), 48, 28, 4, true, false, 0, 48, 28},
		{"name longer than room", recvMsgBuf(40, 0, 1, 0, 28, 4, 1), 49, 28, 4, true, false, 1, 48, 28},
		{"truncated flag", recvMsgBuf(16, 0, 9, MsgTrunc, 28, 4, 5), 53, 28, 4, true, true, 5, 48, 16},
		{"short of header", make([]byte, 10), 10, 28, 4, false, false, 0, 0, 0},
		{"used beyond buffer", recvMsgBuf(16, 0, 5, 0, 28, 4, 5), 54, 28, 4, false, false, 0, 0, 0},
		{"negative used", recvMsgBuf(16, 0, 5, 0, 28, 4, 5), -1, 28, 4, false, false, 0, 0, 0},
		{"control beyond room", recvMsgBuf(16, 8, 5, 0, 28, 4, 5), 53, 28, 4, false, false, 0, 0, 0},
		{"payload longer than said", recvMsgBuf(16, 0, 2, 0, 28, 4, 5), 53, 28, 4, false, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := ParseRecvMsg(tc.buf, tc.used, tc.nameRoom, tc.ctl)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if m.Truncated() != tc.trunc || len(m.Payload) != tc.payload || m.PayloadOffset != tc.off || len(m.Name) != tc.nameLen {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// FuzzParseRecvMsg: whatever the buffer says, ParseRecvMsg never panics,
// and what it returns lies inside the used bytes.
func FuzzParseRecvMsg(f *testing.F) {
	f.Add(recvMsgBuf(16, 0, 5, 0, 28, 4, 5), 53, 28, 4)
	f.Add(recvMsgBuf(28, 0, 1200, MsgTrunc, 28, 4, 10), 58, 28, 4)
	f.Fuzz(func(t *testing.T, buf []byte, used, nameRoom, controlRoom int) {
		m, ok := ParseRecvMsg(buf, used, nameRoom, controlRoom)
		if !ok {
			return
		}
		if m.PayloadOffset+len(m.Payload) != used || len(m.Name) > nameRoom || uint32(len(m.Payload)) > m.PayloadLen {
			t.Fatalf("inconsistent %+v for used %d", m, used)
		}
	})
}
