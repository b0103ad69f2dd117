package main

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The load generator's socket I/O: raw recvmmsg/sendmmsg and UDP GSO on
// non-blocking file descriptors, so that the generator spends less CPU per
// packet than the server it measures. x/sys/unix has no mmsghdr, so it is
// declared here with the kernel's layout (struct msghdr plus an unsigned
// int, padded to 8 bytes on 64-bit).

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
// (UDP_MAX_SEGMENTS is 64 on older kernels, 128 on newer ones).
const maxGSOSegments = 64

// maxGSOBytes bounds one GSO send: the whole super-datagram must fit in
// one IP packet's 16-bit length.
const maxGSOBytes = 65000

// batch is a set of receive (or send) buffers for one recvmmsg (sendmmsg)
// call. It belongs to one goroutine.
type batch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
}

// newBatch returns n buffers of size bytes each.
func newBatch(n, size int) *batch {
	b := &batch{
		hdrs: make([]mmsghdr, n),
		iovs: make([]unix.Iovec, n),
		bufs: make([][]byte, n),
	}
	slab := make([]byte, n*size)
	for i := range n {
		b.bufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.Iovlen = 1
	}
	return b
}

// recv reads up to len(b.bufs) datagrams from the non-blocking socket fd
// without waiting. It returns how many it read; the lengths are in
// b.msgLen(i). unix.EAGAIN means nothing was waiting.
func (b *batch) recv(fd int) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
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

// msgLen is the length of datagram i of the last recv.
func (b *batch) msgLen(i int) int { return int(b.hdrs[i].len) }

// sendmmsg sends datagrams 0..n-1 of b, with lengths lens, on the connected
// socket fd. It returns how many the kernel took.
func (b *batch) send(fd int, lens []int) (int, error) {
	for i, n := range lens {
		b.iovs[i].SetLen(n)
	}
	defer func() {
		for i := range lens {
			b.iovs[i].SetLen(len(b.bufs[i]))
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

// writeRaw writes p on the connected non-blocking socket fd.
func writeRaw(fd int, p []byte) error {
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

// writeGSO writes p, datagrams of size bytes back to back, on the
// connected socket fd whose UDP_SEGMENT is size, in as few sends as the
// GSO limits allow.
func writeGSO(fd int, p []byte, size int) error {
	chunk := gsoSegments(size) * size
	for len(p) > 0 {
		n := min(len(p), chunk)
		if err := writeRaw(fd, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// setGSO makes every send on fd longer than segment bytes leave as
// datagrams of segment bytes each (UDP_SEGMENT, Linux 4.18+).
func setGSO(fd, segment int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment); err != nil {
		return fmt.Errorf("UDP_SEGMENT: %w", err)
	}
	return nil
}

// gsoSegments is how many datagrams of size bytes one GSO send may carry.
func gsoSegments(size int) int {
	return max(1, min(maxGSOSegments, maxGSOBytes/size))
}

// takeFD duplicates the socket of c (close-on-exec, non-blocking like the
// original) and closes c, so that the descriptor leaves Go's netpoller and
// belongs to the caller's own epoll loop.
func takeFD(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup socket: %w", derr)
	}
	_ = c.Close()
	if err := unix.SetNonblock(nfd, true); err != nil {
		_ = unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// epoller is one epoll instance with nanosecond timeouts (epoll_pwait2,
// Linux 5.11+, falling back to epoll_wait's milliseconds).
type epoller struct {
	fd     int
	events []unix.EpollEvent
	noPw2  bool
}

func newEpoller(n int) (*epoller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &epoller{fd: fd, events: make([]unix.EpollEvent, n)}, nil
}

// add watches fd for input, level-triggered, tagging its events with id.
func (e *epoller) add(fd int, id int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: id}
	if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// wait returns the ready events, waiting at most timeout (0: poll).
func (e *epoller) wait(timeout time.Duration) ([]unix.EpollEvent, error) {
	timeout = max(timeout, 0)
	for {
		var n int
		var err error
		if !e.noPw2 {
			ts := unix.NsecToTimespec(int64(timeout))
			r, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(e.fd),
				uintptr(unsafe.Pointer(&e.events[0])), uintptr(len(e.events)),
				uintptr(unsafe.Pointer(&ts)), 0, 0)
			if errno == unix.ENOSYS {
				e.noPw2 = true
				continue
			}
			n = int(r)
			if errno != 0 {
				err = errno
			}
		} else {
			ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
			n, err = unix.EpollWait(e.fd, e.events, ms)
		}
		if errors.Is(err, unix.EINTR) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("epoll wait: %w", err)
		}
		return e.events[:n], nil
	}
}

func (e *epoller) close() { _ = unix.Close(e.fd) }
