package udpio

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched UDP receive (recvmmsg) and send (sendmmsg, UDP GSO) on Linux.
// x/net's ReadBatch allocates per message, so the mmsghdr array is declared
// here with the kernel's layout and filled once per batch.

// mmsghdr is struct mmsghdr: a msghdr and the received length, padded to
// 8 bytes on 64-bit.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Batched reports whether the batched paths (recvmmsg, UDP GSO) are
// available: on Linux they are, elsewhere a batch is one datagram and a run
// leaves datagram by datagram.
const Batched = true

// Batch reads up to len(Bufs) datagrams per system call. It belongs to one
// goroutine at a time. Datagram i is read into Bufs[i][Headroom:], so a
// header can be written in front of it in place.
type Batch struct {
	Bufs     [][]byte
	Headroom int
	// N is the number of datagrams the last Recv read, Err its failure.
	N   int
	Err error
	// Zones names the scope IDs of IPv6 sources (link-local clients of a
	// listener), so that a zone survives the batch; nil drops zones.
	Zones *Zones
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // nil: sources are not asked for
	size  int
}

// NewBatch returns a batch of slots buffers, each with headroom bytes in
// front of a datagram of up to size bytes and tailroom bytes behind it
// (for padding a caller writes in place). Recv records each datagram's
// source, for Msg.
func NewBatch(slots, headroom, size, tailroom int) *Batch {
	b := newBatch(slots, headroom, size, tailroom)
	b.names = make([]unix.RawSockaddrInet6, slots)
	for i := range b.hdrs {
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// NewConnectedBatch returns a batch of slots buffers of size bytes for a
// connected socket: the kernel is not asked for sources (Msg reports none),
// and Send sends to the socket's peer.
func NewConnectedBatch(slots, size int) *Batch { return newBatch(slots, 0, size, 0) }

func newBatch(slots, headroom, size, tailroom int) *Batch {
	b := &Batch{
		Bufs:     make([][]byte, slots),
		Headroom: headroom,
		hdrs:     make([]mmsghdr, slots),
		iovs:     make([]unix.Iovec, slots),
		size:     size,
	}
	for i := range b.Bufs {
		b.Bufs[i] = make([]byte, headroom+size+tailroom)
		b.iovs[i].Base = &b.Bufs[i][headroom]
		b.iovs[i].SetLen(size)
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.Iovlen = 1
	}
	return b
}

// Recv reads what is waiting on fd without blocking. It reports whether
// the caller should stop waiting: false means nothing was there (EAGAIN).
// The count is in b.N, a failure in b.Err.
func (b *Batch) Recv(fd uintptr) bool {
	for i := range b.hdrs {
		if b.names != nil {
			b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		}
		b.hdrs[i].hdr.Flags = 0
	}
	for {
		// Raw: the socket is non-blocking (MSG_DONTWAIT), and the
		// scheduler's bookkeeping would wake sysmon (see Sender).
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.N, b.Err = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			b.N, b.Err = 0, nil
			return false
		default:
			b.N, b.Err = 0, e
			return true
		}
	}
}

// Send sends datagrams 0..len(lens)-1 of b, datagram i being lens[i] bytes
// from Bufs[i][Headroom:], on the connected non-blocking socket fd with
// sendmmsg, without waiting. It returns how many the kernel took; EAGAIN
// means none (the send buffer is full).
func (b *Batch) Send(fd int, lens []int) (int, error) {
	for i, n := range lens {
		b.iovs[i].SetLen(n)
		b.hdrs[i].hdr.Namelen = 0 // to the connected peer, not a recorded source
	}
	defer func() {
		for i := range lens {
			b.iovs[i].SetLen(b.size)
		}
	}()
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(lens)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		default:
			return 0, e
		}
	}
}

// Reader is what ReadLoop drives: it lends a receive batch while datagrams
// are waiting, and handles each batch read into it.
type Reader interface {
	Acquire() *Batch
	Release(*Batch)
	Handle(*Batch)
}

// ErrorQueue is a Reader whose socket queues ICMP errors (IP_RECVERR):
// ReadLoop has it read the error queue when Recv reports an ICMP error
// (ICMPErrno), or when ErrorsQueued says a sender took one. Never per
// datagram.
type ErrorQueue interface {
	ErrorsQueued() bool
	ReadErrors(fd uintptr)
}

// ReadLoop waits on conn with the netpoller and, each time the socket is
// readable, borrows a batch from r, reads datagrams into it with recvmmsg
// and hands each batch to r until one comes back short (the socket is
// empty: a datagram arriving later brings a new readiness event, so the
// recvmmsg that would only say EAGAIN is saved). With probe, the first
// call, made before any wait, peeks instead of borrowing: a new socket is
// most likely empty. Errors that report an earlier send's ICMP error are
// skipped (the socket is fine). It returns when the socket is closed or
// fails.
func ReadLoop(conn *net.UDPConn, r Reader, probe bool) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var failed error
	eq, _ := r.(ErrorQueue)
	fn := func(fd uintptr) bool {
		probed := false
		if probe {
			probe = false
			if !pending(fd) {
				if eq != nil && eq.ErrorsQueued() {
					eq.ReadErrors(fd)
				}
				return false
			}
			probed = eq != nil // pending may have taken an error (MSG_PEEK does)
		}
		b := r.Acquire()
		defer r.Release(b)
		for {
			if !b.Recv(fd) {
				break // nothing waiting: wait for more
			}
			if b.Err != nil {
				// ECONNREFUSED and the like report an earlier send's
				// ICMP error: the socket is fine. A socket with
				// IP_RECVERR has the error itself queued.
				if eq != nil && ICMPErrno(b.Err) {
					eq.ReadErrors(fd)
					continue
				}
				if Transient(b.Err) {
					continue
				}
				failed = b.Err
				return true
			}
			r.Handle(b)
			if b.N < len(b.Bufs) {
				break
			}
		}
		if eq != nil && (probed || eq.ErrorsQueued()) {
			eq.ReadErrors(fd) // a sender took the error (see ErrorQueue)
		}
		return false
	}
	if err := rc.Read(fn); err != nil {
		return err
	}
	return failed
}

// ICMPErrno reports whether err is one Linux turns an ICMP error into
// (icmp_err_convert, icmpv6_err_convert): a socket's pending error, not a
// failure of the socket or of the send.
func ICMPErrno(err error) bool {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE, unix.ENOPROTOOPT,
		unix.EOPNOTSUPP, unix.EHOSTDOWN, unix.ENONET, unix.EPROTO, unix.EACCES:
		return true
	}
	return false
}

// Sockets is how many SO_REUSEPORT sockets a UDP listener opens, at most
// limit: one per processor, as the kernel spreads clients over them by a
// hash of the 4-tuple.
func Sockets(limit int) int { return min(runtime.GOMAXPROCS(0), limit) }

// ReusePort sets SO_REUSEPORT on a socket before it binds (a
// net.ListenConfig.Control function).
func ReusePort(_, _ string, c syscall.RawConn) error {
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

// Msg returns datagram i of the last Recv and its source, unmapped (none
// for a connected batch). ok is false for a truncated datagram or an
// unknown address family. HOT: it allocates nothing (a zone is named from
// b.Zones, cached after its first lookup).
func (b *Batch) Msg(i int) (pkt []byte, from netip.AddrPort, ok bool) {
	h := &b.hdrs[i]
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, netip.AddrPort{}, false
	}
	pkt = b.Datagram(i)
	if b.names == nil {
		return pkt, netip.AddrPort{}, true
	}
	from, ok = DecodeSockaddr(&b.names[i], b.Zones)
	if !ok {
		return nil, netip.AddrPort{}, false
	}
	return pkt, from, true
}

// Datagram returns datagram i of the last Recv, as long as the kernel
// said (cut to the buffer when it was longer).
func (b *Batch) Datagram(i int) []byte {
	return b.Bufs[i][b.Headroom : b.Headroom+int(b.hdrs[i].len)]
}

// DecodeSockaddr returns the address in name, a sockaddr_in or
// sockaddr_in6 as the kernel writes it, unmapped; a link-local IPv6
// address gets its zone from zones (none when zones is nil). ok is false
// for another address family.
func DecodeSockaddr(name *unix.RawSockaddrInet6, zones *Zones) (netip.AddrPort, bool) {
	switch name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), true
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&name.Port))[:])
		addr := netip.AddrFrom16(name.Addr).Unmap()
		if name.Scope_id != 0 && addr.Is6() {
			// A link-local source: without its zone an answer could not
			// be routed back (and two links' fe80::1 would be one client).
			addr = addr.WithZone(zones.Name(name.Scope_id))
		}
		return netip.AddrPortFrom(addr, port), true
	}
	return netip.AddrPort{}, false
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

// Fill makes b hold pkts, each from from, as if Recv had read them: for
// tests and benchmarks of a Reader's Handle without a socket.
func (b *Batch) Fill(pkts [][]byte, from netip.AddrPort) {
	for i, p := range pkts {
		copy(b.Bufs[i][b.Headroom:], p)
		b.hdrs[i].len = uint32(len(p))
		b.hdrs[i].hdr.Flags = 0
		if b.names == nil {
			continue
		}
		port := (*[2]byte)(unsafe.Pointer(&b.names[i].Port))
		binary.BigEndian.PutUint16(port[:], from.Port())
		if from.Addr().Is4() {
			sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.names[i]))
			sa.Family = unix.AF_INET
			sa.Addr = from.Addr().As4()
		} else {
			b.names[i].Family = unix.AF_INET6
			b.names[i].Addr = from.Addr().As16()
		}
	}
	b.N = len(pkts)
}

// Put makes datagram i of b a copy of pkt from from, as if Recv had read
// it (b.N is the caller's to set): for a caller that receives datagrams
// some other way (io_uring) and hands them to a Reader's batch. false:
// pkt does not fit the slot. HOT: it allocates nothing.
func (b *Batch) Put(i int, pkt []byte, from netip.AddrPort) bool {
	if len(pkt) > b.size {
		return false
	}
	copy(b.Bufs[i][b.Headroom:], pkt)
	b.hdrs[i].len = uint32(len(pkt))
	b.hdrs[i].hdr.Flags = 0
	if b.names == nil {
		return true
	}
	name := &b.names[i]
	port := (*[2]byte)(unsafe.Pointer(&name.Port))
	if from.Addr().Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16(port[:], from.Port())
		sa.Addr = from.Addr().As4()
	} else {
		name.Family = unix.AF_INET6
		binary.BigEndian.PutUint16(port[:], from.Port())
		name.Addr = from.Addr().As16()
		name.Scope_id = b.Zones.Index(from.Addr().Zone())
	}
	return true
}

// GSOControlSize is the room GSOControl needs.
const GSOControlSize = 24 // CMSG_SPACE(2) with 8-byte alignment

// GSOControl is gsoControl for callers that build their own msghdr (the
// io_uring reactor's sends): oob needs GSOControlSize bytes.
func GSOControl(oob []byte, size int) []byte { return gsoControl(oob, size) }
