package main

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The load generator's own epoll loop: its sockets leave Go's netpoller
// (takeFD) and are read and written with raw system calls (package udpio:
// recvmmsg/sendmmsg and UDP GSO on non-blocking descriptors), so that the
// generator spends less CPU per packet than the server it measures.

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
