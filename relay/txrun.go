package relay

import (
	"errors"
	"net/netip"
	"syscall"

	"github.com/postern/postern/allocations"
)

// Limits of one UDP GSO send (UDP_SEGMENT, Linux 4.18+).
const (
	// maxGSOSegments is UDP_MAX_SEGMENTS of older kernels (newer allow 128).
	maxGSOSegments = 64
	// maxGSOBytes keeps the whole run within one 64 KiB IP datagram.
	maxGSOBytes = 65000
	// maxGSOSegment keeps every segment within a 1500-byte MTU (IPv6 and
	// UDP headers included): the kernel refuses a segment larger than the
	// path MTU, where a lone datagram would just be fragmented.
	maxGSOSegment = 1500 - 40 - 8
)

// txRun gathers consecutive datagrams from one socket to one destination
// and sends them with one system call: on Linux with UDP GSO, which hands
// the kernel one buffer to cut into datagrams of the first one's size (the
// last may be shorter). Datagrams are copied into the run's buffer once a
// second one joins; a run of one is sent from where it lies, so the caller's
// buffers must stay untouched until flush. A txRun belongs to one goroutine.
// HOT: it allocates nothing.
type txRun struct {
	s       *Server
	out     udpOut
	to      netip.AddrPort
	ctr     *allocations.Counter // counts the run's payloads when sent
	seg     int                  // size of every datagram but the last
	count   int                  // datagrams in the run
	size    int                  // bytes in buf
	payload int                  // payload bytes, for ctr
	closed  bool                 // a shorter datagram ended the run
	// first is the run's first datagram, not yet copied: a run of one (the
	// common case below high rates) is sent from where it was received.
	first  []byte
	buf    []byte
	oob    [gsoOOBSize]byte
	sender *sender
}

func newTxRun(s *Server) *txRun {
	t := &txRun{s: s, buf: make([]byte, maxGSOBytes), sender: newSender()}
	t.sender.zones = s.zones
	return t
}

// add sends dgram (payloadLen bytes of it payload, counted in ctr) from out
// to to, as part of the current run if it can join it.
func (t *txRun) add(out udpOut, to netip.AddrPort, ctr *allocations.Counter, dgram []byte, payloadLen int) {
	n := len(dgram)
	if t.count > 0 && (out.conn != t.out.conn || to != t.to || t.closed || n > t.seg ||
		t.count == maxGSOSegments || t.size+n > len(t.buf)) {
		t.flush()
	}
	if t.count == 0 && (!batchIO || t.s.gsoOff.Load() || n > maxGSOSegment) {
		t.sendOne(out, to, ctr, dgram, payloadLen)
		return
	}
	switch t.count {
	case 0:
		t.out, t.to, t.ctr, t.seg = out, to, ctr, n
		t.first = dgram
	case 1:
		copy(t.buf, t.first)
		t.first = nil
		fallthrough
	default:
		copy(t.buf[t.size:], dgram)
	}
	t.size += n
	t.count++
	t.payload += payloadLen
	if n < t.seg {
		t.closed = true
	}
}

// flush sends the run.
func (t *txRun) flush() {
	if t.count == 0 {
		return
	}
	if t.count == 1 {
		t.sendOne(t.out, t.to, t.ctr, t.first, t.payload)
	} else if err := t.send(t.out, t.buf[:t.size], gsoControl(t.oob[:], t.seg), t.to); err == nil {
		t.ctr.AddN(uint64(t.count), uint64(t.payload))
	} else {
		if gsoUnsupported(err) {
			t.s.gsoOff.Store(true)
			t.s.log.Warn("UDP GSO unavailable: sending datagrams one by one", "err", err)
		}
		// Resend one by one: the kernel took nothing of a failed GSO send.
		// Only what went out counts as relayed (bytes pro rata: the
		// segments' payloads are not kept apart).
		sent := 0
		for off := 0; off < t.size; off += t.seg {
			if t.sendOne(t.out, t.to, nil, t.buf[off:min(off+t.seg, t.size)], 0) {
				sent++
			}
		}
		t.ctr.AddN(uint64(sent), uint64(t.payload*sent/t.count))
	}
	t.out, t.ctr, t.first = udpOut{}, nil, nil
	t.count, t.size, t.payload, t.closed = 0, 0, 0, false
}

// sendOne sends one datagram at once, outside the run, and counts it in
// ctr (if not nil); it reports whether the datagram went out (else it is
// counted as dropped).
func (t *txRun) sendOne(out udpOut, to netip.AddrPort, ctr *allocations.Counter, dgram []byte, payloadLen int) bool {
	if err := t.send(out, dgram, nil, to); err != nil {
		t.s.stats.drop(DropWriteFailed)
		return false
	}
	if ctr != nil {
		ctr.Add(payloadLen)
	}
	return true
}

// send is t.sender.send, made once more when the first attempt returned
// only the relay socket's pending ICMP error: with IP_RECVERR, Linux fails
// the first send after an ICMP error arrives with that error and sends
// nothing (the error itself waits in the socket's error queue, which the
// relay loop reads when out.errs says so; icmp_linux.go). Without the
// second attempt the datagram would be lost, and an error of ICMP's
// making (ENOPROTOOPT, EOPNOTSUPP) would read as a kernel without GSO.
func (t *txRun) send(out udpOut, b, oob []byte, to netip.AddrPort) error {
	err := t.sender.send(out, b, oob, to)
	if err != nil && out.errs != nil && isICMPErrno(err) {
		out.errs.Store(true)
		err = t.sender.send(out, b, oob, to)
	}
	return err
}

// gsoUnsupported tells the errors of a kernel or device without UDP GSO
// from those of one send (EINVAL: e.g. a segment over the path MTU).
func gsoUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}

// isTransient tells a socket error that reports an earlier send's ICMP
// error (the socket is still fine) from a broken socket.
func isTransient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EMSGSIZE)
}
