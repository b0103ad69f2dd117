package relay

import (
	"net/netip"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
)

// txRun gathers consecutive datagrams from one socket to one destination
// and sends them with one system call (udpio.Run: on Linux with UDP GSO),
// counting what went out in the allocation's counter and what did not as
// dropped. A run of one is sent from where it lies, so the caller's
// buffers must stay untouched until flush. A txRun belongs to one
// goroutine. HOT: it allocates nothing.
type txRun struct {
	s       *Server
	run     *udpio.Run
	out     udpOut               // the run's socket
	ctr     *allocations.Counter // counts the run's payloads when sent
	payload int                  // payload bytes, for ctr
	// buf is the run's buffer; a TCP/TLS client's relay loop, which sends
	// no UDP run, stages its frames in it instead (datapath.go).
	buf    []byte
	sender *udpio.Sender
}

func newTxRun(s *Server) *txRun {
	t := &txRun{s: s, buf: make([]byte, udpio.MaxGSOBytes), sender: udpio.NewSender()}
	t.run = udpio.NewRun(t.buf)
	t.sender.Zones = s.zones
	return t
}

// add sends dgram (payloadLen bytes of it payload, counted in ctr) from out
// to to, as part of the current run if it can join it.
func (t *txRun) add(out udpOut, to netip.AddrPort, ctr *allocations.Counter, dgram []byte, payloadLen int) {
	n := len(dgram)
	if !t.run.Joins(out.conn, to, n) {
		t.flush()
	}
	if t.run.Len() == 0 {
		if !udpio.Batched || t.s.gsoOff.Load() || n > udpio.MaxGSOSegment {
			t.sendOne(out, to, ctr, dgram, payloadLen)
			return
		}
		t.out, t.ctr = out, ctr
	}
	t.run.Add(out.conn, to, dgram)
	t.payload += payloadLen
}

// flush sends the run.
func (t *txRun) flush() {
	r := t.run
	count := r.Len()
	if count == 0 {
		return
	}
	if count == 1 {
		t.sendOne(t.out, r.To(), t.ctr, r.Datagram(0), t.payload)
	} else if err := t.send(t.out, r.Bytes(), r.Control(), r.To()); err == nil {
		t.ctr.AddN(uint64(count), uint64(t.payload))
	} else {
		if udpio.GSOUnsupported(err) {
			t.s.gsoOff.Store(true)
			t.s.log.Warn("UDP GSO unavailable: sending datagrams one by one", "err", err)
		}
		// Resend one by one: the kernel took nothing of a failed GSO send.
		// Only what went out counts as relayed (bytes pro rata: the
		// segments' payloads are not kept apart).
		sent := 0
		for i := range count {
			if t.sendOne(t.out, r.To(), nil, r.Datagram(i), 0) {
				sent++
			}
		}
		t.ctr.AddN(uint64(sent), uint64(t.payload*sent/count))
	}
	r.Reset()
	t.out, t.ctr, t.payload = udpOut{}, nil, 0
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

// send is t.sender.Send, made once more when the first attempt returned
// only the relay socket's pending ICMP error: with IP_RECVERR, Linux fails
// the first send after an ICMP error arrives with that error and sends
// nothing (the error itself waits in the socket's error queue, which the
// relay loop reads when out.errs says so; icmp_linux.go). Without the
// second attempt the datagram would be lost, and an error of ICMP's
// making (ENOPROTOOPT, EOPNOTSUPP) would read as a kernel without GSO.
func (t *txRun) send(out udpOut, b, oob []byte, to netip.AddrPort) error {
	sock := out.socket()
	err := t.sender.Send(sock, b, oob, to)
	if err != nil && out.errs != nil && udpio.ICMPErrno(err) {
		out.errs.Store(true)
		err = t.sender.Send(sock, b, oob, to)
	}
	return err
}
