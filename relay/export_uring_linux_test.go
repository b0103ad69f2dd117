package relay

import "sync/atomic"

// UringServed is the number of relay sockets the io_uring reactors serve
// (listener sockets left out),
// or -1 when there are none (epoll).
func (s *Server) UringServed() int {
	p := s.uring
	if p == nil || len(p.rs) == 0 {
		return -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, sock := range p.socks {
		if sock.p != nil {
			n++
		}
	}
	return n
}

// UringHeld is what the reactors hold after their last batch: buffers
// taken from the kernel and not given back, and relay sockets served.
func (s *Server) UringHeld() (buffers, sockets int) {
	if s.uring == nil {
		return 0, 0
	}
	for _, r := range s.uring.rs {
		v := r.state.Load()
		buffers += int(v >> 32)
		sockets += int(uint32(v))
	}
	return buffers, sockets
}

// FailUringSetup makes the reactors' setup fail, before Start.
func FailUringSetup(s *Server) {
	if s.uring != nil {
		s.uring.failSetup = true
	}
}

// UringListeners is the number of listener sockets the reactors read.
func (s *Server) UringListeners() int {
	p := s.uring
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, sock := range p.socks {
		if sock.lr != nil {
			n++
		}
	}
	return n
}

// uringSum sums a counter over the reactors.
func (s *Server) uringSum(counter func(*reactor) *atomic.Uint64) uint64 {
	if s.uring == nil {
		return 0
	}
	var n uint64
	for _, r := range s.uring.rs {
		n += counter(r).Load()
	}
	return n
}

// UringDirect is the number of client datagrams the reactors sent to
// peers straight from their receive buffers.
func (s *Server) UringDirect() uint64 {
	return s.uringSum(func(r *reactor) *atomic.Uint64 { return &r.direct })
}

// UringEnters is the number of waits the reactors made.
func (s *Server) UringEnters() uint64 {
	return s.uringSum(func(r *reactor) *atomic.Uint64 { return &r.enters })
}

// UringRuns is the number of GSO runs the reactors sent.
func (s *Server) UringRuns() uint64 {
	return s.uringSum(func(r *reactor) *atomic.Uint64 { return &r.gsoRuns })
}
