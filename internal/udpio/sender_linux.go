package udpio

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender sends datagrams with sendmsg(2), MSG_DONTWAIT, as a raw system
// call through the socket's RawConn (which keeps the descriptor from being
// closed under it). A raw call skips the scheduler's system call
// bookkeeping, which wakes Go's sysmon thread whenever the process was idle:
// at moderate rates that is once per packet, and on a server pinned to one
// core each wakeup is a context switch away from relaying (BENCHMARKS.md).
// The call never blocks: a full send buffer drops the datagram (the caller
// counts it) instead of stalling the loop that serves every other client.
// A Sender belongs to one goroutine. HOT: it allocates nothing.
type Sender struct {
	msg   unix.Msghdr
	iov   unix.Iovec
	sa4   unix.RawSockaddrInet4
	sa6   unix.RawSockaddrInet6
	errno syscall.Errno
	call  func(fd uintptr) bool // s.sendmsg, made once
	// Zones gives the scope IDs of zoned (link-local) destinations; nil:
	// none.
	Zones *Zones
}

// NewSender returns a Sender.
func NewSender() *Sender {
	s := &Sender{}
	s.call = s.sendmsg
	s.msg.Iov = &s.iov
	s.msg.Iovlen = 1
	return s
}

func (s *Sender) sendmsg(fd uintptr) bool {
	_, _, s.errno = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&s.msg)), unix.MSG_DONTWAIT)
	return true // never wait for write space
}

// Send sends b (with the control message oob, if any: a run's Control)
// from sock to to. An IPv4 destination is given as sockaddr_in also to a
// dual-stack IPv6 socket, which Linux accepts as it is.
func (s *Sender) Send(sock Socket, b, oob []byte, to netip.AddrPort) error {
	s.iov.Base = nil
	if len(b) > 0 {
		s.iov.Base = &b[0]
	}
	s.iov.SetLen(len(b))
	s.msg.Control = nil
	if len(oob) > 0 {
		s.msg.Control = &oob[0]
	}
	s.msg.SetControllen(len(oob))
	if addr := to.Addr(); addr.Is4() || addr.Is4In6() {
		s.sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa4.Port))[:], to.Port())
		s.sa4.Addr = addr.Unmap().As4()
		s.msg.Name = (*byte)(unsafe.Pointer(&s.sa4))
		s.msg.Namelen = unix.SizeofSockaddrInet4
	} else {
		s.sa6.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa6.Port))[:], to.Port())
		s.sa6.Addr = addr.As16()
		s.sa6.Scope_id = s.Zones.Index(addr.Zone())
		s.msg.Name = (*byte)(unsafe.Pointer(&s.sa6))
		s.msg.Namelen = unix.SizeofSockaddrInet6
	}
	err := sock.Raw.Write(s.call)
	s.iov.Base, s.msg.Control = nil, nil // keep no caller's buffer
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return s.errno
	}
	return nil
}
