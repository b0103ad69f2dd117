package relay

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/udpio"
)

// GSO runs of the io_uring reactor's sends, as txRun makes them for the
// epoll path: consecutive datagrams of one batch from one socket to one
// address (one allocation flat out, in either direction) leave in one
// SENDMSG with UDP_SEGMENT, their buffers as its iovecs, so that the
// kernel takes them through its stack once. Without them a few
// allocations flat out cost io_uring about twice epoll's CPU per packet
// (BENCHMARKS.md, issue 14).

// uringRuns is how many runs a reactor has in flight at most; past it,
// datagrams leave one by one.
const uringRuns = 128

// uringRun is a GSO run in flight: the datagrams of buffers ids[:n], the
// first one's send slot naming the socket, address and counter.
type uringRun struct {
	msg unix.Msghdr
	iov [udpio.MaxGSOSegments]unix.Iovec
	ids [udpio.MaxGSOSegments]uint16
	ctl [udpio.GSOControlSize]byte
	n   int
	// retried: made once more after the relay socket's ICMP error.
	retried bool
}

// uringStaged is the reactor's send not yet submitted: buffer id's
// datagram, alone or (run) heading a run.
type uringStaged struct {
	on    bool
	id    uint16
	run   *uringRun
	runID uint32
	seg   int  // the run's segment size: the first datagram's
	bytes int  // the run's bytes so far
	short bool // a shorter datagram joined: the run is complete
}

// queue stages the send that sends[id] describes: it joins the staged
// one when it can, else the staged one is submitted and this one staged.
func (r *reactor) queue(id uint16) {
	if r.staged.on && r.join(id) {
		return
	}
	r.flushStaged()
	n := int(r.sends[id].iov.Len)
	r.staged = uringStaged{on: true, id: id, seg: n, bytes: n}
}

// join adds buffer id's datagram to the staged send if it goes from the
// same socket to the same address and fits a GSO run: at most the first
// one's size (a shorter one ends the run), within the kernel's limits.
func (r *reactor) join(id uint16) bool {
	st := &r.staged
	first, sl := &r.sends[st.id], &r.sends[id]
	n := int(sl.iov.Len)
	switch {
	case !udpio.Batched || r.p.s.gsoOff.Load(), st.short, st.seg > udpio.MaxGSOSegment,
		n > st.seg, st.bytes+n > udpio.MaxGSOBytes:
		return false
	case first.fd != sl.fd || first.fixed != sl.fixed || first.ctr != sl.ctr,
		first.msg.Namelen != sl.msg.Namelen || first.sa != sl.sa:
		return false
	}
	if st.run == nil {
		k := len(r.freeRuns)
		if k == 0 {
			return false
		}
		st.runID = r.freeRuns[k-1]
		r.freeRuns = r.freeRuns[:k-1]
		st.run = &r.runs[st.runID]
		st.run.iov[0], st.run.ids[0], st.run.n, st.run.retried = first.iov, st.id, 1, false
	}
	run := st.run
	if run.n == len(run.ids) {
		return false
	}
	run.iov[run.n], run.ids[run.n] = sl.iov, id
	run.n++
	first.payload += sl.payload
	sl.ctr, sl.iov.Base, sl.errs = nil, nil, nil
	st.bytes += n
	st.short = n < st.seg
	return true
}

// flushStaged submits the staged send, with the next enter.
func (r *reactor) flushStaged() {
	st := &r.staged
	if !st.on {
		return
	}
	if st.run == nil {
		r.prepSend(&r.sends[st.id], st.id)
	} else {
		r.prepRun(st.runID, st.seg)
	}
	*st = uringStaged{}
}

// prepRun submits run runID of segments of seg bytes.
func (r *reactor) prepRun(runID uint32, seg int) {
	run := &r.runs[runID]
	first := &r.sends[run.ids[0]]
	ctl := udpio.GSOControl(run.ctl[:], seg)
	run.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&first.sa)), Namelen: first.msg.Namelen,
		Iov: &run.iov[0], Control: &ctl[0]}
	run.msg.SetIovlen(run.n)
	run.msg.SetControllen(len(ctl))
	r.prepMsg(&run.msg, first.fd, first.fixed, udRun|uint64(runID))
	r.gsoRuns.Add(1)
}

// prepMsg queues a SENDMSG of msg from fd (a file slot with fixed).
func (r *reactor) prepMsg(msg *unix.Msghdr, fd int, fixed bool, userData uint64) {
	e := r.sqe()
	uringPrepSend(e, fd, msg, userData)
	if fixed {
		e.UseFixed(fd)
	}
	r.inflight++
}

// runDone is the completion of run runID: its datagrams are counted (or
// dropped) and their buffers go back.
func (r *reactor) runDone(runID uint32, res int32) {
	run := &r.runs[runID]
	first := &r.sends[run.ids[0]]
	r.inflight--
	if res < 0 {
		e := syscall.Errno(-res)
		switch {
		case first.toPeer && !run.retried && udpio.ICMPErrno(e):
			first.errs.Store(true) // as in handle: the socket's error, not the run's
			run.retried = true
			r.prepMsg(&run.msg, first.fd, first.fixed, udRun|uint64(runID))
			return
		case udpio.GSOUnsupported(e):
			if !r.p.s.gsoOff.Swap(true) {
				r.p.s.log.Warn("UDP GSO unavailable: sending datagrams one by one", "err", e)
			}
		}
		for range run.n {
			r.p.s.stats.drop(DropWriteFailed)
		}
	} else {
		first.ctr.AddN(uint64(run.n), uint64(first.payload))
	}
	first.ctr, first.errs = nil, nil
	for _, id := range run.ids[:run.n] {
		r.sends[id].iov.Base = nil
		r.bufs.Recycle(id)
	}
	r.held -= run.n
	run.n = 0
	r.freeRuns = append(r.freeRuns, runID)
}
