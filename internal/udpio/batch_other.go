//go:build !linux

package udpio

import (
	"net"
	"net/netip"
	"syscall"
)

// Without recvmmsg and UDP GSO (everywhere but Linux), a batch is one
// datagram read with ReadFromUDPAddrPort, runs are sent one datagram at a
// time, and a UDP listener is one socket (SO_REUSEPORT does not spread
// datagrams over sockets on every system).

const Batched = false

const gsoOOBSize = 0

// Batch holds one datagram here (see the Linux version).
type Batch struct {
	Bufs     [][]byte
	Headroom int
	N        int
	Err      error
	Zones    *Zones // unused: ReadFromUDPAddrPort keeps zones itself
	lens     []int
	froms    []netip.AddrPort
	size     int
}

// NewBatch returns a batch of one buffer (slots is ignored).
func NewBatch(_, headroom, size, tailroom int) *Batch {
	return &Batch{
		Bufs:     [][]byte{make([]byte, headroom+size+tailroom)},
		Headroom: headroom,
		lens:     make([]int, 1),
		froms:    make([]netip.AddrPort, 1),
		size:     size,
	}
}

// Msg returns datagram i and its source.
func (b *Batch) Msg(i int) ([]byte, netip.AddrPort, bool) {
	return b.Datagram(i), b.froms[i], true
}

// Datagram returns datagram i.
func (b *Batch) Datagram(i int) []byte { return b.Bufs[i][b.Headroom : b.Headroom+b.lens[i]] }

// Reader is what ReadLoop drives (see the Linux version).
type Reader interface {
	Acquire() *Batch
	Release(*Batch)
	Handle(*Batch)
}

// ReadLoop reads conn one datagram at a time, holding one batch from r,
// until the socket is closed or fails.
func ReadLoop(conn *net.UDPConn, r Reader, _ bool) error {
	b := r.Acquire()
	defer r.Release(b)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(b.Bufs[0][b.Headroom : b.Headroom+b.size])
		if err != nil {
			if Transient(err) {
				continue
			}
			return err
		}
		if from.Addr().Is4In6() {
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		}
		b.N, b.lens[0], b.froms[0] = 1, n, from
		r.Handle(b)
	}
}

// ICMPErrno is false: no system but Linux queues ICMP errors on a socket.
func ICMPErrno(error) bool { return false }

// Sockets is 1: a listener is one socket.
func Sockets(int) int { return 1 }

// ReusePort does nothing.
func ReusePort(string, string, syscall.RawConn) error { return nil }

func gsoControl(oob []byte, _ int) []byte { return oob[:0] }

// Sender sends one datagram per call through the net package.
type Sender struct {
	Zones *Zones // unused: WriteMsgUDPAddrPort takes zones itself
}

// NewSender returns a Sender.
func NewSender() *Sender { return &Sender{} }

// Send sends b (with the control message oob, if any) from sock to to.
func (*Sender) Send(sock Socket, b, oob []byte, to netip.AddrPort) error {
	_, _, err := sock.Conn.WriteMsgUDPAddrPort(b, oob, to)
	return err
}
