//go:build !linux

package relay

import (
	"net/netip"
	"syscall"
)

// Without recvmmsg and UDP GSO, a "batch" is one datagram read with a plain
// recvfrom, and runs are sent one datagram at a time.

const batchIO = false

const gsoOOBSize = 0

type rxBatch struct {
	bufs     [][]byte
	headroom int
	lens     []int
	froms    []netip.AddrPort
	n        int
	errno    error
}

func newRxBatch(_, headroom int) *rxBatch {
	return &rxBatch{
		bufs:     [][]byte{make([]byte, headroom+maxDatagram+3)},
		headroom: headroom,
		lens:     make([]int, 1),
		froms:    make([]netip.AddrPort, 1),
	}
}

func (b *rxBatch) recv(fd uintptr) bool {
	buf := b.bufs[0][b.headroom : b.headroom+maxDatagram]
	n, sa, err := syscall.Recvfrom(int(fd), buf, 0)
	if err == syscall.EAGAIN {
		return false
	}
	b.n, b.errno = 1, err
	if err != nil {
		b.n = 0
		return true
	}
	b.lens[0] = n
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		b.froms[0] = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		b.froms[0] = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return true
}

func pending(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}

func (b *rxBatch) read(rc syscall.RawConn, fn func(uintptr) bool) error {
	if err := rc.Read(fn); err != nil {
		return err
	}
	return b.errno
}

func (b *rxBatch) msg(i int) ([]byte, netip.AddrPort, bool) {
	return b.bufs[i][b.headroom : b.headroom+b.lens[i]], b.froms[i], b.froms[i].IsValid()
}

func gsoControl(oob []byte, _ int) []byte { return oob[:0] }
