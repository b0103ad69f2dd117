package relay

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/postern/postern/internal/udpio"
)

// udpOut is a UDP socket as the packet path sends from it: the socket and
// its syscall.RawConn, made once (SyscallConn allocates on every call).
type udpOut struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	// errs, for a relay socket, is its allocation's ErrQueued: set when a
	// send reports an ICMP error waiting in the socket's error queue.
	errs *atomic.Bool
	// unpolled, for a listener socket, is set when io_uring reads it and
	// the netpoller no longer watches it: writes must never wait for it.
	unpolled bool
}

// newUDPOut returns conn's udpOut.
func newUDPOut(conn *net.UDPConn) (udpOut, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return udpOut{}, fmt.Errorf("relay: raw access to UDP socket %v: %w", conn.LocalAddr(), err)
	}
	return udpOut{conn: conn, raw: raw}, nil
}

// socket is out as udpio sends from it.
func (o udpOut) socket() udpio.Socket { return udpio.Socket{Conn: o.conn, Raw: o.raw} }
