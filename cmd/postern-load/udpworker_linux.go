package main

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/udpio"
)

// udpWorker runs the UDP data path of some flows, clients and peers alike,
// in one epoll loop on one locked OS thread: no goroutine switch per packet,
// and sends paced to the nanosecond with epoll_pwait2 timeouts.
type udpWorker struct {
	flows     []*flow
	spec      frameSpec
	pace      pacing
	gso       bool
	epoch     time.Time
	ctr       *counters
	hist      *histogram
	measuring *atomic.Bool

	ep   *epoller
	rb   *udpio.Batch // receive buffers
	sb   *udpio.Batch // send buffers when GSO is off
	lens []int
	echo []byte // a peer's echo, contiguous for GSO
}

func newUDPWorker(flows []*flow, spec frameSpec, pace pacing, gso bool, epoch time.Time, ctr *counters, measuring *atomic.Bool) (*udpWorker, error) {
	w := &udpWorker{
		flows: flows, spec: spec, pace: pace, gso: gso, epoch: epoch,
		ctr: ctr, hist: newHistogram(), measuring: measuring,
	}
	segs := udpio.Segments(spec.frameLen())
	w.rb = udpio.NewConnectedBatch(udpio.MaxGSOSegments, spec.frameLen()+64)
	w.sb = udpio.NewConnectedBatch(segs, spec.frameLen())
	w.lens = make([]int, segs)
	w.echo = make([]byte, udpio.MaxGSOSegments*spec.size)
	ep, err := newEpoller(256)
	if err != nil {
		return nil, err
	}
	w.ep = ep
	for i, f := range flows {
		f.sendBuf = make([]byte, segs*spec.frameLen())
		for j := range segs {
			spec.fill(f.sendBuf[j*spec.frameLen():(j+1)*spec.frameLen()], f)
		}
		if err := ep.add(f.client, int32(2*i)); err != nil {
			ep.close()
			return nil, err
		}
		if err := ep.add(f.peer, int32(2*i+1)); err != nil {
			ep.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *udpWorker) now() int64 { return int64(time.Since(w.epoch)) }

// run moves packets until stop is set.
func (w *udpWorker) run(stop *atomic.Bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer w.ep.close()

	now := w.now()
	flat := w.pace.rate == 0
	if flat {
		for _, f := range w.flows {
			f.lastRecv = now
			w.send(f, w.pace.window, now)
		}
	}
	var interval, next int64
	if !flat {
		interval = int64(float64(time.Second) / w.pace.rate)
		next = now
	}
	rr, lastCheck := 0, now
	for !stop.Load() {
		timeout := stallTimeout / 4
		if !flat {
			timeout = min(timeout, time.Duration(next-now))
		}
		evs, err := w.ep.wait(timeout)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			f := w.flows[ev.Fd/2]
			if ev.Fd%2 == 0 {
				w.onClient(f)
			} else {
				w.onPeer(f)
			}
		}
		now = w.now()
		if !flat {
			// One frame at a time, as media is sent; never a burst of
			// more than 64 to catch up after a stall.
			for n := 0; next <= now && n < 64; n++ {
				w.send(w.flows[rr], 1, now)
				rr = (rr + 1) % len(w.flows)
				next += interval
			}
			if now-next > int64(10*time.Millisecond) {
				next = now
			}
			continue
		}
		if now-lastCheck > int64(stallTimeout/4) {
			lastCheck = now
			for _, f := range w.flows {
				if f.inflight > 0 && now-f.lastRecv > int64(stallTimeout) {
					w.ctr.lost.Add(uint64(f.inflight))
					f.inflight = 0
					f.lastRecv = now
					w.send(f, w.pace.window, now)
				}
			}
		}
	}
	return nil
}

// send sends n frames from f's client, in GSO batches.
func (w *udpWorker) send(f *flow, n int, now int64) {
	fl := w.spec.frameLen()
	segs := len(w.lens)
	for n > 0 {
		k := min(n, segs)
		for j := range k {
			f.seq++
			w.spec.stamp(f.sendBuf[j*fl:], f.seq, now)
		}
		var err error
		if w.gso {
			err = udpio.Write(f.client, f.sendBuf[:k*fl])
		} else {
			for j := range k {
				copy(w.sb.Bufs[j], f.sendBuf[j*fl:(j+1)*fl])
				w.lens[j] = fl
			}
			var sent int
			sent, err = w.sb.Send(f.client, w.lens[:k])
			if err == nil && sent < k {
				w.ctr.sendErrs.Add(uint64(k - sent))
				k = sent
			}
		}
		if err != nil {
			w.ctr.sendErrs.Add(uint64(k))
			return
		}
		w.ctr.sent.Add(uint64(k))
		f.inflight += k
		n -= k
	}
}

// recv reads what is waiting on fd into w.rb without waiting and returns
// how many datagrams it read (0 also when the read failed).
func (w *udpWorker) recv(fd int) int {
	if !w.rb.Recv(uintptr(fd)) || w.rb.Err != nil {
		return 0
	}
	return w.rb.N
}

// onClient reads what the relay forwarded to f's client.
func (w *udpWorker) onClient(f *flow) {
	n := w.recv(f.client)
	if n == 0 {
		return
	}
	now := w.now()
	rec := w.measuring.Load()
	got := 0
	for i := range n {
		p, ok := clientPayload(w.rb.Datagram(i))
		if !ok {
			continue
		}
		got++
		if sent, ok := payloadSent(p); ok && rec {
			w.hist.add(now - sent)
		}
	}
	w.ctr.toClient.Add(uint64(got))
	f.lastRecv = now
	if w.pace.rate == 0 {
		f.inflight = max(0, f.inflight-n)
		w.send(f, w.pace.window-f.inflight, now)
	}
}

// onPeer echoes what the relay forwarded to f's peer back to the relayed
// address, in one GSO send when the datagrams are of one size.
func (w *udpWorker) onPeer(f *flow) {
	n := w.recv(f.peer)
	if n == 0 {
		return
	}
	w.ctr.toPeer.Add(uint64(n))
	size := len(w.rb.Datagram(0))
	same := w.gso && size > 0
	off := 0
	for i := range n {
		d := w.rb.Datagram(i)
		l := len(d)
		if l != size {
			same = false
		}
		if same {
			copy(w.echo[off:], d)
			off += l
		}
	}
	if same && size == w.spec.size {
		if err := udpio.WriteGSO(f.peer, w.echo[:off], size); err != nil {
			w.ctr.sendErrs.Add(uint64(n))
		}
		return
	}
	for i := range n {
		d := w.rb.Datagram(i)
		if len(d) == 0 {
			continue
		}
		if err := udpio.Write(f.peer, d); err != nil && !errors.Is(err, unix.EAGAIN) {
			w.ctr.sendErrs.Add(1)
		}
	}
}
