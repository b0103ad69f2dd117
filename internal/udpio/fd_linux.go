package udpio

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sends on bare non-blocking descriptors, for a caller with its own epoll
// loop (the load generator) rather than the netpoller.

// SetGSO makes every send on fd longer than segment bytes leave as
// datagrams of segment bytes each (UDP_SEGMENT, Linux 4.18+); 0 turns it
// off.
func SetGSO(fd, segment int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment); err != nil {
		return fmt.Errorf("UDP_SEGMENT: %w", err)
	}
	return nil
}

// Write writes p on the connected non-blocking socket fd, as a raw
// system call (no scheduler bookkeeping), without waiting.
func Write(fd int, p []byte) error {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return e
		}
	}
}

// WriteGSO writes p, datagrams of size bytes back to back, on the
// connected socket fd whose UDP_SEGMENT is size (SetGSO), in as few sends
// as the GSO limits allow.
func WriteGSO(fd int, p []byte, size int) error {
	chunk := Segments(size) * size
	for len(p) > 0 {
		n := min(len(p), chunk)
		if err := Write(fd, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
