package main

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

// The TCP/TLS data path: one goroutine per client connection, and one per
// peer socket. TLS needs crypto/tls on a net.Conn, so these use Go's
// netpoller rather than the UDP epoll loop; a paced stream sends in 1 ms
// steps (the timer resolution), not frame by frame.

// streamFlow drives one client connection.
type streamFlow struct {
	f         *flow
	sc        *streamCtrl
	spec      frameSpec
	pace      pacing
	epoch     time.Time
	ctr       *counters
	hist      *histogram
	measuring *atomic.Bool
	buf       []byte
}

func newStreamFlow(f *flow, sc *streamCtrl, spec frameSpec, pace pacing, epoch time.Time, ctr *counters, measuring *atomic.Bool) *streamFlow {
	s := &streamFlow{f: f, sc: sc, spec: spec, pace: pace, epoch: epoch, ctr: ctr, hist: newHistogram(), measuring: measuring}
	n := max(pace.window, 64)
	fl := spec.frameLen()
	s.buf = make([]byte, n*fl)
	for j := range n {
		spec.fill(s.buf[j*fl:(j+1)*fl], f)
	}
	return s
}

func (s *streamFlow) now() int64 { return int64(time.Since(s.epoch)) }

// write sends n frames in one Write (at most the buffer's worth).
func (s *streamFlow) write(n int) {
	fl := s.spec.frameLen()
	n = min(n, len(s.buf)/fl)
	if n <= 0 {
		return
	}
	now := s.now()
	for j := range n {
		s.f.seq++
		s.spec.stamp(s.buf[j*fl:], s.f.seq, now)
	}
	if _, err := s.sc.c.Write(s.buf[:n*fl]); err != nil {
		s.ctr.sendErrs.Add(uint64(n))
		return
	}
	s.ctr.sent.Add(uint64(n))
	s.f.inflight += n
}

// run moves frames until stop is set; then the caller closes the connection.
func (s *streamFlow) run(stop *atomic.Bool) {
	flat := s.pace.rate == 0
	if flat {
		s.write(s.pace.window)
	} else {
		go s.paceWrites(stop)
	}
	got := 0
	for !stop.Load() {
		if s.sc.br.Buffered() == 0 {
			_ = s.sc.c.SetReadDeadline(time.Now().Add(stallTimeout))
		}
		frame, kind, err := s.sc.f.Next()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return // closed or broken
			}
			s.ctr.toClient.Add(uint64(got))
			if flat && !stop.Load() {
				s.ctr.lost.Add(uint64(max(0, s.f.inflight-got)))
				s.f.inflight = 0
				s.write(s.pace.window)
			}
			got = 0
			continue
		}
		if kind == proto.KindChannelData || kind == proto.KindSTUN {
			if p, ok := clientPayload(frame); ok {
				got++
				if sent, ok := payloadSent(p); ok && s.measuring.Load() {
					s.hist.add(s.now() - sent)
				}
			}
		}
		// Flat out, refill once half the window has come back: one Write
		// of half a window, whatever the server's writes looked like. (Refilling
		// whenever nothing more was buffered made the generator's writes
		// follow the server's TLS records: a server sealing a batch in one
		// record got big writes back, one sealing a record per frame (as
		// coturn does, and Postern since some clients need it) got a write
		// per frame, and paid for the extra reads.)
		switch {
		case flat && s.f.inflight-got <= s.pace.window/2:
			s.ctr.toClient.Add(uint64(got))
			s.f.inflight = max(0, s.f.inflight-got)
			s.write(s.pace.window - s.f.inflight)
			got = 0
		case !flat && s.sc.br.Buffered() < 4:
			s.ctr.toClient.Add(uint64(got))
			got = 0
		}
	}
}

// paceWrites sends at s.pace.rate in 1 ms steps. It shares the connection's
// write side with nobody: run only reads when paced.
func (s *streamFlow) paceWrites(stop *atomic.Bool) {
	start := time.Now()
	var sent float64
	for !stop.Load() {
		due := s.pace.rate*time.Since(start).Seconds() - sent
		if n := int(due); n > 0 {
			s.write(n)
			sent += float64(n)
		}
		time.Sleep(time.Millisecond)
	}
}

// runPeer echoes what the relay sends to one peer socket until the socket is
// closed, with recvmmsg and one GSO send per batch.
func runPeer(c *net.UDPConn, spec frameSpec, gso bool, ctr *counters) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	if gso {
		var gerr error
		_ = rc.Control(func(fd uintptr) { gerr = udpio.SetGSO(int(fd), spec.size) })
		gso = gerr == nil
	}
	rb := udpio.NewConnectedBatch(udpio.MaxGSOSegments, spec.size+64)
	echo := make([]byte, udpio.MaxGSOSegments*spec.size)
	readFn := func(fd uintptr) bool { return rb.Recv(fd) }
	var out []byte
	writeFn := func(fd uintptr) bool {
		err := udpio.WriteGSO(int(fd), out, spec.size)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			ctr.sendErrs.Add(1)
		}
		return !errors.Is(err, unix.EAGAIN)
	}
	for {
		if err := rc.Read(readFn); err != nil {
			return // closed
		}
		n := rb.N
		if rb.Err != nil || n == 0 {
			continue
		}
		ctr.toPeer.Add(uint64(n))
		same := gso
		off := 0
		for i := range n {
			d := rb.Datagram(i)
			if len(d) != spec.size {
				same = false
				break
			}
			off += copy(echo[off:], d)
		}
		if same {
			out = echo[:off]
			if err := rc.Write(writeFn); err != nil {
				return
			}
			continue
		}
		for i := range n {
			if out = rb.Datagram(i); len(out) > 0 {
				if err := rc.Write(writeFn); err != nil {
					return
				}
			}
		}
	}
}
