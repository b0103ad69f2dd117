package relay

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

// Relay socket options on Linux: the DF bit (RFC 8656 §7.2, §11.2, §14,
// §15) and ICMP errors from peers (§11.5).
//
// ICMP errors reach an unconnected UDP socket only with IP_RECVERR (or
// IPV6_RECVERR): the kernel then queues each on the socket's error queue,
// read with recvmsg(MSG_ERRQUEUE), and also records it as the socket's
// pending error, which the next recvmmsg or sendmsg on the socket returns
// (and clears) instead of doing its work. So:
//
//   - the relay loop (udpio.ReadLoop) reads the error queue when its recvmmsg
//     returns such an error, and when a sender has flagged that it got one
//     (Allocation.ErrQueued); never per datagram;
//   - a send that fails with such an error is made once more (txRun.send):
//     the failed attempt sent nothing, and it has cleared the error.
//
// A sender that takes the error just after the relay loop last looked at
// the flag leaves the entry queued until the loop's next wakeup (the next
// datagram or ICMP error): late, never lost, and the queue is bounded by
// the socket's receive buffer, which it is charged to.

// dontFragmentSupported reports whether relay sockets can send with DF.
const dontFragmentSupported = true

// prepareRelaySocket sets out's options before it carries data: IP_RECVERR
// (IPV6_RECVERR on IPv6), and with df the DF bit.
func prepareRelaySocket(out udpOut, df bool) error {
	v6 := isIPv6Socket(out.conn)
	var serr error
	err := out.raw.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
		if serr == nil && df {
			serr = setDontFragmentFD(int(fd), v6)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("relay: relay socket %v options: %w", out.conn.LocalAddr(), err)
	}
	return nil
}

// isIPv6Socket reports whether conn is an AF_INET6 socket (relay sockets are
// bound to one family: udp6 for an IPv6 relay address).
func isIPv6Socket(conn *net.UDPConn) bool {
	u, ok := conn.LocalAddr().(*net.UDPAddr)
	return ok && u.IP.To4() == nil
}

// setDontFragmentFD makes fd send every datagram with DF: IP_PMTUDISC_DO
// sets DF on IPv4 and, rather than fragment a datagram larger than the
// path MTU the kernel knows, fails the send with EMSGSIZE. On IPv6, where
// only the sender may fragment, IPV6_DONTFRAG and IPV6_PMTUDISC_DO keep the
// kernel from adding a Fragment header (RFC 8656 §15: "set the outgoing
// packet to not permit fragmentation ... in IPv6 by not adding a Fragment
// header").
func setDontFragmentFD(fd int, v6 bool) error {
	if !v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
		return err
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1)
}

// setDontFragment turns DF on for an allocation's relay socket after the
// fact, for a Send indication with DONT-FRAGMENT (see Server.dontFragment).
func setDontFragment(a *allocations.Allocation) error {
	if err := setDontFragmentConn(a.Conn, a.Raw); err != nil {
		return err
	}
	if h := a.Half6; h != nil {
		return setDontFragmentConn(h.Conn, h.Raw) // both halves of a dual allocation
	}
	return nil
}

func setDontFragmentConn(conn *net.UDPConn, raw syscall.RawConn) error {
	v6 := isIPv6Socket(conn)
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = setDontFragmentFD(int(fd), v6) }); err != nil {
		return err
	}
	return serr
}

// ICMP forwarding budget per allocation: a burst of icmpBurst, then one
// per icmpInterval. The kernel accepts any ICMP error whose quoted header
// names the relay socket, so anyone who knows a relayed address can send
// them, at any rate and naming any peer with a permission; each would cost
// a system call and a message to the client. Real peers send few: Linux
// sends at most about one ICMP error a second to a destination
// (net.ipv4.icmp_ratelimit), and one tells the client what it needs to know.
// Errors over the budget are read (the queue must not fill the receive
// buffer) and discarded.
const (
	icmpBurst    = 10
	icmpInterval = 200 * time.Millisecond
)

// maxErrorsPerRead bounds one readErrors call, so that a flood of ICMP
// errors cannot hold the relay loop away from data for long; what is left
// is read at the loop's next turn.
const maxErrorsPerRead = 64

// icmpReader reads a relay socket's error queue. It belongs to the relay
// loop, made on its first ICMP error.
type icmpReader struct {
	hdr  unix.Msghdr
	iov  unix.Iovec
	name unix.RawSockaddrInet6
	// data receives the start of the payload of the datagram the error is
	// about; it is not needed (MSG_TRUNC says the rest was cut).
	data [8]byte
	oob  [128]byte // one IP_RECVERR control message: sock_extended_err and the offender's address
	out  [proto.ICMPIndicationSize]byte
	tat  int64 // budget: theoretical arrival time of the next error, monotonic nanoseconds
}

func newICMPReader() *icmpReader {
	q := &icmpReader{}
	q.iov.Base = &q.data[0]
	q.iov.SetLen(len(q.data))
	q.hdr.Iov = &q.iov
	q.hdr.Iovlen = 1
	q.hdr.Name = (*byte)(unsafe.Pointer(&q.name))
	q.hdr.Control = &q.oob[0]
	return q
}

// icmpError is one entry of the error queue that came from an ICMP error.
type icmpError struct {
	peer   netip.AddrPort // where the datagram the error is about was going
	v6     bool           // ICMPv6
	typ    uint8
	code   uint8
	info   uint32 // the MTU for "fragmentation needed" and "packet too big"
	isICMP bool   // false for local errors (e.g. EMSGSIZE of a DF send) and others
}

// recv reads one entry of fd's error queue; ok is false when it is empty.
// HOT on the error path only: it allocates nothing.
func (q *icmpReader) recv(fd uintptr) (e icmpError, ok bool) {
	q.hdr.Namelen = unix.SizeofSockaddrInet6
	q.hdr.SetControllen(len(q.oob))
	q.hdr.Flags = 0
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&q.hdr)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return icmpError{}, false // EAGAIN: empty
		}
		break
	}
	e.peer, _ = udpio.DecodeSockaddr(&q.name, nil) // peers carry no zone (see peerReader.Acquire)
	// The control messages: find IP_RECVERR / IPV6_RECVERR by hand
	// (unix.ParseSocketControlMessage allocates).
	oob := q.oob[:min(int(q.hdr.Controllen), len(q.oob))]
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(oob) {
			break
		}
		if (h.Level == unix.IPPROTO_IP && h.Type == unix.IP_RECVERR) || (h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_RECVERR) {
			if n-unix.CmsgLen(0) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				ee := (*unix.SockExtendedErr)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
				e.typ, e.code, e.info = ee.Type, ee.Code, ee.Info
				switch ee.Origin {
				case unix.SO_EE_ORIGIN_ICMP:
					e.isICMP = true
				case unix.SO_EE_ORIGIN_ICMP6:
					e.isICMP, e.v6 = true, true
				}
			}
			break
		}
		oob = oob[min(cmsgAlign(n), len(oob)):]
	}
	return e, true
}

// cmsgAlign rounds n up to the alignment of control messages.
func cmsgAlign(n int) int { return (n + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1) }

// forwardable reports whether RFC 8656 §11.5 relays an ICMP error of this
// type: "the server verifies that the type is either 3 or 11 for an ICMPv4
// [RFC0792] packet or either 1, 2, or 3 for an ICMPv6 [RFC4443] packet.
// It also verifies that the IP packet in the ICMP packet payload contains
// a UDP header." (The kernel delivered it to a UDP socket, so it did.)
func (e *icmpError) forwardable() bool {
	if !e.isICMP || !e.peer.IsValid() {
		return false
	}
	if e.v6 {
		return e.typ >= 1 && e.typ <= 3
	}
	return e.typ == 3 || e.typ == 11
}

// attr is the ICMP attribute for e (RFC 8656 §18.13): Error Data is the
// next-hop MTU for ICMPv6 type 2 and ICMPv4 type 3 code 4, else zero.
func (e *icmpError) attr() proto.ICMP {
	a := proto.ICMP{Type: e.typ, Code: uint16(e.code)}
	if (e.v6 && e.typ == 2) || (!e.v6 && e.typ == 3 && e.code == 4) {
		a.Data = e.info
	}
	return a
}

// allow spends one of the allocation's ICMP budget at now (monotonic
// nanoseconds): a generic cell rate algorithm, a burst of icmpBurst then
// one per icmpInterval.
func (q *icmpReader) allow(now int64) bool {
	tat := max(q.tat, now)
	if tat-now > int64((icmpBurst-1)*icmpInterval) {
		return false
	}
	q.tat = tat + int64(icmpInterval)
	return true
}

// ErrorsQueued reports whether a sender has taken the relay socket's
// pending error since the error queue was last read.
func (p *peerReader) ErrorsQueued() bool { return p.errs.Load() }

// ReadErrors reads the relay socket's error queue (fd is the socket, inside
// udpio.ReadLoop's RawConn.Read) and tells the client of each ICMP error RFC 8656
// §11.5 relays, in a Data indication with XOR-PEER-ADDRESS and ICMP:
//
// "The server looks up the allocation whose relayed transport address
// corresponds to the encapsulated packet's source IP address and UDP port."
// (the socket's.) "For ICMP packets, the source IP address MUST NOT be
// checked against the permissions list as it would be for UDP packets.
// Instead, the server extracts the destination IP address from the
// encapsulated IP header. The server then compares this address with the
// IP address associated with each permission in the list of permissions
// for the allocation. If no match is found, relaying is not permitted and
// the server silently discards the ICMP packet." The kernel gives that
// destination, and its UDP port, as the entry's address: "If destination
// port in the encapsulated UDP header is available to the server, then the
// port portion of XOR-PEER-ADDRESS attribute is set to the destination
// port".
//
// A ChannelData message has no room for an attribute, so an ICMP error
// about a peer with a channel is reported the same way, in a Data
// indication.
func (p *peerReader) ReadErrors(fd uintptr) {
	p.errs.Store(false)
	q := p.icmp
	if q == nil {
		q = newICMPReader()
		p.icmp = q
	}
	now := time.Now()
	mono := p.s.mono(now)
	for range maxErrorsPerRead {
		e, ok := q.recv(fd)
		if !ok {
			return
		}
		if !e.forwardable() || !p.a.Permitted(e.peer.Addr(), now) || !q.allow(mono) {
			continue
		}
		frame := proto.PutICMPIndication(q.out[:], e.peer, e.attr(), proto.NewTransactionID(p.rng))
		if frame == nil {
			continue
		}
		if p.udp != nil && p.tx != nil {
			p.tx.sendOne(p.udp.out, p.udp.addr, nil, frame, 0)
		} else if err := p.a.Sink.WriteToClient(frame); err != nil {
			p.s.stats.drop(DropWriteFailed)
		}
	}
	p.errs.Store(true) // more may be queued: read on at the next turn
}
