package relay

import (
	"cmp"
	"fmt"
)

// testDefaultIO is the mode of servers whose Config.IO is empty when set:
// only the package's tests set it (POSTERN_TEST_RELAY_IO, io_test.go), to
// run every test on either path.
var testDefaultIO string

// The values of Config.IO: how relay sockets are read.
const (
	// IOAuto uses io_uring where the kernel allows it, else epoll.
	IOAuto = "auto"
	// IOUring reads relay sockets with io_uring reactors (uring_linux.go)
	// and fails to start without it.
	IOUring = "io_uring"
	// IOEpoll gives each relay socket its goroutine, woken by the
	// netpoller (epoll), reading with recvmmsg.
	IOEpoll = "epoll"
)

// CheckIO reports whether v is a value of Config.IO ("" is IOEpoll).
func CheckIO(v string) error {
	switch v {
	case "", IOAuto, IOUring, IOEpoll:
		return nil
	}
	return fmt.Errorf("relay: io %q: want %q, %q or %q", v, IOAuto, IOUring, IOEpoll)
}

// newIO sets up the relay sockets' reading as cfg.IO says: s.uring is nil
// for epoll (and where there is no io_uring at all).
func (s *Server) newIO(mode string) error {
	if err := CheckIO(mode); err != nil {
		return err
	}
	if mode == "" {
		// epoll by default: io_uring halves the CPU per packet of many
		// allocations at media rates, but sends to clients without GSO
		// runs, so a few allocations flat out cost it about twice as
		// much, and its batching wait adds up to a millisecond of
		// latency (BENCHMARKS.md, issue 14).
		mode = cmp.Or(testDefaultIO, IOEpoll)
	}
	if mode == IOEpoll || !uringBuilt {
		if mode == IOUring {
			return fmt.Errorf("relay: io = %q: not on this system", IOUring)
		}
		return nil
	}
	p, err := newUringPool(s, mode)
	if err != nil {
		return err
	}
	s.uring = p
	return nil
}

// stopUring stops the reactors, after every relay loop has ended.
func (s *Server) stopUring() {
	if s.uring != nil {
		s.uring.stop()
	}
}

// startUring starts the reactors, if any, and gives them the listener
// sockets, so that a server's descriptors and goroutines are all there
// once it has started (the first allocation would start them otherwise).
func (s *Server) startUring(udps []*udpListener) {
	if s.uring == nil || !s.uring.start() {
		return
	}
	for _, l := range udps {
		for _, so := range l.socks {
			if _, err := s.uring.listenerFD(so.out.conn); err != nil {
				s.log.Warn("io_uring: listener socket not duplicated", "err", err)
			}
			// Before the readers and workers start: the reactor will
			// read the socket and the netpoller no longer watch it
			// (serveListener), so answers must never wait
			// (udpSink.WriteToClient).
			so.out.unpolled = s.quic == nil
		}
	}
}
