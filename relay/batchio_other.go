//go:build !linux

package relay

import (
	"net"
	"net/netip"
	"syscall"
)

// Without recvmmsg and UDP GSO (everywhere but Linux), a batch is one
// datagram read with ReadFromUDPAddrPort, runs are sent one datagram at a
// time, and a UDP listener is one socket (SO_REUSEPORT does not spread
// datagrams over sockets on every system).

const batchIO = false

const gsoOOBSize = 0

type rxBatch struct {
	bufs     [][]byte
	headroom int
	lens     []int
	froms    []netip.AddrPort
	n        int
	zones    *zoneCache // unused: ReadFromUDPAddrPort keeps zones itself
}

func newRxBatch(_, headroom int) *rxBatch {
	return &rxBatch{
		bufs:     [][]byte{make([]byte, headroom+maxDatagram+3)},
		headroom: headroom,
		lens:     make([]int, 1),
		froms:    make([]netip.AddrPort, 1),
	}
}

func (b *rxBatch) msg(i int) ([]byte, netip.AddrPort, bool) {
	return b.bufs[i][b.headroom : b.headroom+b.lens[i]], b.froms[i], true
}

// readLoop reads conn one datagram at a time, holding one batch from r,
// until the socket is closed or fails.
func readLoop(conn *net.UDPConn, r batchReader, _ bool) error {
	b := r.acquire()
	defer r.release(b)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(b.bufs[0][b.headroom : b.headroom+maxDatagram])
		if err != nil {
			if isTransient(err) {
				continue
			}
			return err
		}
		b.n, b.lens[0], b.froms[0] = 1, n, unmapAddrPort(from)
		r.handle(b)
	}
}

func listenerSockets() int { return 1 }

func reusePort(string, string, syscall.RawConn) error { return nil }

func gsoControl(oob []byte, _ int) []byte { return oob[:0] }

// sender sends one datagram per call through the net package.
type sender struct {
	zones *zoneCache // unused: WriteMsgUDPAddrPort takes zones itself
}

func newSender() *sender { return &sender{} }

func (*sender) send(out udpOut, b, oob []byte, to netip.AddrPort) error {
	_, _, err := out.conn.WriteMsgUDPAddrPort(b, oob, to)
	return err
}
