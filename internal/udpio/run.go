package udpio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// MaxDatagram is the largest UDP payload there is.
const MaxDatagram = 65535

// Limits of one UDP GSO send (Linux 4.18+).
const (
	// MaxGSOSegments is UDP_MAX_SEGMENTS of older kernels (newer allow 128).
	MaxGSOSegments = 64
	// MaxGSOBytes keeps the whole run within one 64 KiB IP datagram.
	MaxGSOBytes = 65000
	// MaxGSOSegment keeps every segment within a 1500-byte MTU (IPv6 and
	// UDP headers included): the kernel refuses a segment larger than the
	// path MTU, where a lone datagram would just be fragmented.
	MaxGSOSegment = 1500 - 40 - 8
)

// Segments is how many datagrams of size bytes one GSO send may carry.
func Segments(size int) int {
	return max(1, min(MaxGSOSegments, MaxGSOBytes/size))
}

// Socket is a UDP socket as a sender sends from it: the socket and its
// syscall.RawConn, made once (SyscallConn allocates on every call).
type Socket struct {
	Conn *net.UDPConn
	Raw  syscall.RawConn
}

// NewSocket returns conn's Socket.
func NewSocket(conn *net.UDPConn) (Socket, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Socket{}, fmt.Errorf("raw access to UDP socket %v: %w", conn.LocalAddr(), err)
	}
	return Socket{Conn: conn, Raw: raw}, nil
}

// Run gathers consecutive datagrams from one socket to one destination, to
// leave in one system call: with UDP GSO, which hands the kernel one buffer
// to cut into datagrams of the first one's size (the last may be shorter).
// Datagrams are copied into the run's buffer once a second one joins; a run
// of one is sent from where it lies, so the caller's buffer must stay
// untouched until Reset. A Run belongs to one goroutine. HOT: it allocates
// nothing.
//
// The run only gathers: the caller sends it (Sender.Send with Bytes and
// Control, or Datagram by Datagram), counts it, and Resets it.
type Run struct {
	conn   *net.UDPConn // the run's socket
	to     netip.AddrPort
	seg    int  // size of every datagram but the last
	count  int  // datagrams in the run
	size   int  // bytes in buf
	closed bool // a shorter datagram ended the run
	// first is the run's first datagram, not yet copied: a run of one (the
	// common case below high rates) is sent from where it was received.
	first []byte
	buf   []byte
	oob   [gsoOOBSize]byte
}

// NewRun returns an empty run gathering into buf (MaxGSOBytes: as much as
// one GSO send takes).
func NewRun(buf []byte) *Run { return &Run{buf: buf} }

// Len is the number of datagrams in the run.
func (r *Run) Len() int { return r.count }

// To is the run's destination.
func (r *Run) To() netip.AddrPort { return r.to }

// Joins reports whether a datagram of n bytes from conn to to can join the
// run: an empty run takes any; else it must go from the same socket to the
// same destination, be no longer than the first, and fit the GSO limits.
// When it cannot, the run is to be sent and Reset first.
func (r *Run) Joins(conn *net.UDPConn, to netip.AddrPort, n int) bool {
	return r.count == 0 || conn == r.conn && to == r.to && !r.closed && n <= r.seg &&
		r.count < MaxGSOSegments && r.size+n <= len(r.buf)
}

// Add puts dgram, from conn to to, in the run, which Joins allowed. A
// datagram shorter than the first ends the run: it is the last segment.
func (r *Run) Add(conn *net.UDPConn, to netip.AddrPort, dgram []byte) {
	n := len(dgram)
	switch r.count {
	case 0:
		r.conn, r.to, r.seg = conn, to, n
		r.first = dgram
	case 1:
		copy(r.buf, r.first)
		r.first = nil
		fallthrough
	default:
		copy(r.buf[r.size:], dgram)
	}
	r.size += n
	r.count++
	if n < r.seg {
		r.closed = true
	}
}

// Bytes is the run's datagrams back to back, for one GSO send (a run of
// more than one).
func (r *Run) Bytes() []byte { return r.buf[:r.size] }

// Control is the control message that makes a send of Bytes leave as the
// run's datagrams (empty where there is no GSO). It lives in the run.
func (r *Run) Control() []byte { return gsoControl(r.oob[:], r.seg) }

// Datagram returns datagram i of the run, for sending one by one.
func (r *Run) Datagram(i int) []byte {
	if r.count == 1 {
		return r.first
	}
	return r.buf[i*r.seg : min((i+1)*r.seg, r.size)]
}

// Reset empties the run, keeping no caller's buffer.
func (r *Run) Reset() {
	r.conn, r.first = nil, nil
	r.count, r.size, r.closed = 0, 0, false
}

// GSOUnsupported tells the errors of a kernel or device without UDP GSO
// from those of one send (EINVAL: e.g. a segment over the path MTU): after
// one, the caller sends datagram by datagram.
func GSOUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}

// Transient tells a socket error that reports an earlier send's ICMP
// error (the socket is still fine) from a broken socket.
func Transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EMSGSIZE)
}
