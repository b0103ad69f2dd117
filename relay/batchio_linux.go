package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched UDP receive (recvmmsg) and UDP GSO send on Linux. x/net's
// ReadBatch allocates per message, so the mmsghdr array is declared here
// with the kernel's layout and filled once per batch.

// mmsghdr is struct mmsghdr: a msghdr and the received length, padded to
// 8 bytes on 64-bit.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batchIO reports whether the batched paths are available.
const batchIO = true

// rxBatch reads up to len(bufs) datagrams per system call. It belongs to
// one goroutine at a time. Datagram i is read into bufs[i][headroom:], so a
// header can be written in front of it in place.
type rxBatch struct {
	bufs     [][]byte
	headroom int
	hdrs     []mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet6
	n        int   // datagrams read by the last recv
	errno    error // error of the last recv, if any
	// zones names the scope IDs of IPv6 sources (link-local clients of a
	// listener), so that a zone survives the batch; nil drops zones.
	zones *zoneCache
}

func newRxBatch(slots, headroom int) *rxBatch {
	b := &rxBatch{
		bufs:     make([][]byte, slots),
		headroom: headroom,
		hdrs:     make([]mmsghdr, slots),
		iovs:     make([]unix.Iovec, slots),
		names:    make([]unix.RawSockaddrInet6, slots),
	}
	size := headroom + maxDatagram + 3 // up to 3 bytes of stream padding
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][headroom]
		b.iovs[i].SetLen(maxDatagram)
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.Iovlen = 1
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// recv reads what is waiting on fd without blocking. It reports whether
// the caller should stop waiting: false means nothing was there (EAGAIN).
// The count is in b.n, a failure in b.errno.
func (b *rxBatch) recv(fd uintptr) bool {
	for i := range b.hdrs {
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrs[i].hdr.Flags = 0
	}
	for {
		// Raw: the socket is non-blocking (MSG_DONTWAIT), and the
		// scheduler's bookkeeping would wake sysmon (see sender).
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.n, b.errno = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			b.n = 0
			return false
		default:
			b.n, b.errno = 0, e
			return true
		}
	}
}

// readLoop waits on conn with the netpoller and, each time the socket is
// readable, borrows a batch from r, reads datagrams into it with recvmmsg
// and hands each batch to r until one comes back short (the socket is
// empty: a datagram arriving later brings a new readiness event, so the
// recvmmsg that would only say EAGAIN is saved). With probe, the first
// call, made before any wait, peeks instead of borrowing: a new socket is
// most likely empty. It returns when the socket is closed or fails.
func readLoop(conn *net.UDPConn, r batchReader, probe bool) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var failed error
	eq, _ := r.(errorQueueReader)
	fn := func(fd uintptr) bool {
		probed := false
		if probe {
			probe = false
			if !pending(fd) {
				if eq != nil && eq.errorsQueued() {
					eq.readErrors(fd)
				}
				return false
			}
			probed = eq != nil // pending may have taken an error (MSG_PEEK does)
		}
		b := r.acquire()
		defer r.release(b)
		for {
			if !b.recv(fd) {
				break // nothing waiting: wait for more
			}
			if b.errno != nil {
				// ECONNREFUSED and the like report an earlier send's
				// ICMP error: the socket is fine. A relay socket has
				// the error itself queued (icmp_linux.go).
				if eq != nil && isICMPErrno(b.errno) {
					eq.readErrors(fd)
					continue
				}
				if isTransient(b.errno) {
					continue
				}
				failed = b.errno
				return true
			}
			r.handle(b)
			if b.n < len(b.bufs) {
				break
			}
		}
		if eq != nil && (probed || eq.errorsQueued()) {
			eq.readErrors(fd) // a sender took the error (see txRun.send)
		}
		return false
	}
	if err := rc.Read(fn); err != nil {
		return err
	}
	return failed
}

// errorQueueReader is a batchReader whose socket queues ICMP errors (a relay
// socket, with IP_RECVERR): readLoop has it read the error queue when recv
// reports an error, or when errorsQueued says a sender took one. Never per
// datagram.
type errorQueueReader interface {
	errorsQueued() bool
	readErrors(fd uintptr)
}

// listenerSockets is how many SO_REUSEPORT sockets a UDP listener opens:
// the kernel spreads clients over them by a hash of the 4-tuple.
func listenerSockets() int { return min(runtime.GOMAXPROCS(0), maxListenerSockets) }

// reusePort sets SO_REUSEPORT on a socket before it binds.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// pending reports whether a datagram is waiting on fd (MSG_PEEK, no
// buffer taken). Errors count as pending: the next recv reports them.
func pending(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		return e != unix.EAGAIN
	}
}

// msg returns datagram i of the last recv and its source, unmapped. ok is
// false for a truncated datagram or an unknown address family.
func (b *rxBatch) msg(i int) (pkt []byte, from netip.AddrPort, ok bool) {
	h := &b.hdrs[i]
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, netip.AddrPort{}, false
	}
	n := int(h.len)
	pkt = b.bufs[i][b.headroom : b.headroom+n]
	name := &b.names[i]
	switch name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return pkt, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), true
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&name.Port))[:])
		addr := netip.AddrFrom16(name.Addr).Unmap()
		if name.Scope_id != 0 && addr.Is6() {
			// A link-local source: without its zone an answer could not
			// be routed back (and two links' fe80::1 would be one client).
			addr = addr.WithZone(b.zones.name(name.Scope_id))
		}
		return pkt, netip.AddrPortFrom(addr, port), true
	}
	return nil, netip.AddrPort{}, false
}

// gsoControl writes the UDP_SEGMENT control message for segments of size
// bytes into oob and returns it.
func gsoControl(oob []byte, size int) []byte {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
	return oob[:unix.CmsgSpace(2)]
}

// gsoOOBSize is at least unix.CmsgSpace(2), the buffer gsoControl needs.
const gsoOOBSize = 32
