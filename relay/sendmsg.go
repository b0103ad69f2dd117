package relay

import (
	"fmt"
	"net"
	"syscall"
)

// udpOut is a UDP socket as the packet path sends from it: the socket and
// its syscall.RawConn, made once (SyscallConn allocates on every call).
type udpOut struct {
	conn *net.UDPConn
	raw  syscall.RawConn
}

// newUDPOut returns conn's udpOut.
func newUDPOut(conn *net.UDPConn) (udpOut, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return udpOut{}, fmt.Errorf("relay: raw access to UDP socket %v: %w", conn.LocalAddr(), err)
	}
	return udpOut{conn: conn, raw: raw}, nil
}
