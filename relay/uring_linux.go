package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/internal/uring"
	"github.com/postern/postern/relay/proto"
)

// The io_uring reactor (Config.IO): the peer → client half of the data
// plane for allocations of UDP clients, in batches across allocations.
//
// Without it each relay socket has its own goroutine, woken by the
// netpoller for each datagram that arrives alone at media rates: a
// wake-up, a recvmmsg and a sendmsg per packet (BENCHMARKS.md, issue 14).
// With it, a few reactors (one per processor, each a goroutine locked to
// its thread, owning one ring) hold a multishot RECVMSG on every relay
// socket they serve, with a provided-buffer ring the kernel picks buffers
// from; the ring defers the receive work (IORING_SETUP_DEFER_TASKRUN) to
// the reactor's next io_uring_enter, which so receives on every socket
// that has datagrams, submits the sends queued by the last batch, and
// waits, in one system call. Each datagram goes through the same checks
// as peerReader.forward (permission, peer policy, size, bandwidth), gets
// its ChannelData or Data indication header written in place in front of
// it in the provided buffer, and leaves to the client in a SENDMSG entry
// on the listener socket; the buffer goes back to the kernel when the send
// completes.
//
// The reactors also read the UDP listener sockets without QUIC sharing
// (serveListener): what arrives is copied into the socket's
// listenerReader batch and relayed as the listener goroutine would
// (ChannelData and Send indications to peers, in GSO runs; requests to the
// worker pool), so that both directions of the data plane run on the
// reactor's thread. Under traffic a reactor waits holding its processor
// (a raw io_uring_enter bounded to uringHeldUs, then runtime.Gosched):
// an ordinary blocking call would have the runtime hand the processor to
// another thread and back at every wake-up, which measured more than the
// system calls saved (BENCHMARKS.md). Idle, it sleeps in an ordinary call.
//
// Each relay socket still has its goroutine (relayFromSocket): it hands
// the socket to a reactor and waits for the allocation's end, then has the
// reactor cancel the receive and waits for its last completion, so that
// neither a buffer nor a ring entry outlives the allocation. The reactor
// works on duplicates of the descriptors it uses (the relay socket's and
// the listener socket's), so a socket closed elsewhere never has its
// number reused under a queued entry.

// uringBuilt: this system has the io_uring reactor.
const uringBuilt = true

const (
	// uringSQEntries is each ring's submission queue: a batch's sends
	// and re-arms; more are submitted early.
	uringSQEntries = 1024
	// uringCQEntries is its completion queue (receives and sends of one
	// batch); the kernel keeps overflow (IORING_FEAT_NODROP).
	uringCQEntries = 8192
	// uringBufs buffers per ring of uringBufSize bytes: room for any UDP
	// datagram behind the headroom. The memory is mapped, and touched
	// only where datagrams are written (a page or two each).
	uringBufs    = 512
	uringBufSize = uring.RecvMsgOutSize + uringNameRoom + uringControlRoom + udpio.MaxDatagram + 1
	// uringNameRoom is the room reserved for a source address, and
	// uringControlRoom (no control data is asked for) pads it so that the
	// payload has proto.DataIndicationHeadroom bytes in front of it, the
	// recvmsg_out header and the name, which are read before the header
	// is written over them.
	uringNameRoom    = unix.SizeofSockaddrInet6
	uringControlRoom = proto.DataIndicationHeadroom - uring.RecvMsgOutSize - uringNameRoom
	// uringBatch completions, or uringMinWaitUs after the first, end a
	// reactor's wait: at media rates datagrams arrive one by one, and
	// without the wait each would be a wake-up and an io_uring_enter of
	// its own. 200 µs is far below the jitter buffers of media (tens of
	// milliseconds) and coturn's own RTT p99 here (BENCHMARKS.md).
	uringBatch     = 256
	uringMinWaitUs = 200
	// uringHeldUs bounds a wait that keeps the processor (under traffic),
	// and how long the other goroutines wait for it: 1 ms.
	uringHeldUs = 1000
	// uringMaxReactors caps the reactors.
	uringMaxReactors = 16
)

// User data of the ring's requests: the kind in the top byte, a socket
// slot or buffer ID below.
const (
	udRecv   = 1 << 56
	udSend   = 2 << 56
	udWake   = 3 << 56
	udCancel = 4 << 56
	udKind   = 0xff << 56
)

// uringPool is the server's reactors, started on first use.
type uringPool struct {
	s    *Server
	mode string // "auto" or "io_uring"

	once  sync.Once
	err   error // why there are no reactors
	rs    []*reactor
	next  uint32 // round robin, under mu
	mu    sync.Mutex
	dups  map[*net.UDPConn]int // listener sockets' duplicates
	stopd bool
	// socks are the sockets being served, for the janitor, under mu.
	socks       map[*net.UDPConn]*uringSock
	stopJanitor chan struct{}
	// failSetup makes every reactor's setup fail (tests of the fallback).
	failSetup bool
	// epfd is the runtime's epoll descriptor (leaveNetpoller); -1: not
	// looked for yet, -2: not found. Under mu.
	epfd        int
	janitorDone chan struct{}
}

// uringJanitorPeriod is how often the janitor looks for relay sockets
// closed without their allocation ending (a deleted half of a dual
// allocation, RFC 8656 §8.1; tests): the kernel's receive holds the
// socket open, so a close alone does not end it.
const uringJanitorPeriod = time.Second

// uringOp is a request to a reactor from another goroutine.
type uringOp struct {
	add, remove *uringSock
	stop        bool
}

// reactor is one ring and the goroutine locked to its thread.
type reactor struct {
	p    *uringPool
	ring *uring.Ring
	bufs *uring.BufRing
	efd  int
	wake [8]byte // the eventfd read's buffer

	mu    sync.Mutex
	inbox []uringOp // under mu
	work  []uringOp // the reactor's copy of inbox

	socks     []*uringSock // by slot
	free      []uint32
	live      int
	sends     []uringSend // by buffer ID
	inflight  int
	rearm     []*uringSock
	lpend     []*uringSock // listener sockets with datagrams pending
	listeners int          // listener sockets among live
	stopping  bool
	exited    chan struct{}

	held     int              // buffers taken from the kernel, not yet given back
	state    atomic.Uint64    // held<<32 | live, stored after each batch (for tests)
	complete func(*uring.CQE) // r.handle, made once
	now      time.Time
	mono     int64
}

// uringSock is one relay socket served by a reactor.
type uringSock struct {
	p        *peerReader     // a relay socket's reader; nil for a listener socket
	lr       *listenerReader // a listener socket's reader, else nil
	pending  int             // datagrams put in lr's batch, not yet relayed
	fd       int
	clientFD int // the listener socket's duplicate
	// fd is a listener socket's duplicate (ownFD), the reactor's to close;
	// -1 for a relay socket, whose descriptor is used only inside rc's
	// Control (armFn, icmpFn: made once by the reactor).
	ownFD         bool
	armFn, icmpFn func(fd uintptr)
	clientSA      unix.RawSockaddrInet6
	saLen         uint32
	msg           unix.Msghdr // the multishot RECVMSG's
	slot          uint32
	armed         bool
	closing       bool
	done          chan struct{}   // closed when the reactor let go of the socket
	rc            syscall.RawConn // the relay socket's, to see it closed
	closed        chan struct{}   // closed by the janitor when it is
}

// uringSend is a send in flight, in the slot of the buffer it sends from.
type uringSend struct {
	msg     unix.Msghdr
	iov     unix.Iovec
	sa      unix.RawSockaddrInet6
	ctr     *allocations.Counter
	payload int
}

// newUringPool returns the pool for mode ("auto" or "io_uring"; "epoll"
// has none). With "io_uring" a ring is tried at once, so that a kernel
// without it is an error at start rather than a silent fallback.
func newUringPool(s *Server, mode string) (*uringPool, error) {
	p := &uringPool{s: s, mode: mode, dups: map[*net.UDPConn]int{}, socks: map[*net.UDPConn]*uringSock{}, epfd: -1,
		stopJanitor: make(chan struct{}), janitorDone: make(chan struct{})}
	if mode == IOUring {
		if err := probeUring(); err != nil {
			return nil, fmt.Errorf("relay: io = %q: %w", IOUring, err)
		}
	}
	return p, nil
}

// probeUring sets up and drops a ring with a buffer ring, as a reactor
// would.
func probeUring() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := uring.New(8, uring.Options{DeferTaskrun: true})
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := r.NewBufRing(0, 2, 64)
	if err != nil {
		return err
	}
	return b.Close()
}

// start starts the reactors, once; it reports whether there are any.
func (p *uringPool) start() bool {
	p.once.Do(func() {
		n := min(runtime.GOMAXPROCS(0), uringMaxReactors)
		for range n {
			r, err := p.newReactor()
			if err != nil {
				p.err = err
				break
			}
			p.rs = append(p.rs, r)
		}
		if p.err != nil {
			for _, r := range p.rs {
				r.post(uringOp{stop: true})
				<-r.exited
			}
			p.rs = nil
			p.s.log.Warn("io_uring unavailable: relay sockets are read with epoll and recvmmsg", "err", p.err)
			close(p.janitorDone)
			return
		}
		go p.janitor()
	})
	return len(p.rs) > 0
}

// newReactor starts a reactor and waits until its ring is set up.
func (p *uringPool) newReactor() (*reactor, error) {
	r := &reactor{p: p, efd: -1, exited: make(chan struct{}), sends: make([]uringSend, uringBufs)}
	r.complete = r.handle
	for i := range r.sends {
		sl := &r.sends[i]
		sl.msg.Name = (*byte)(unsafe.Pointer(&sl.sa))
		sl.msg.Iov = &sl.iov
		sl.msg.Iovlen = 1
	}
	ready := make(chan error, 1)
	go r.run(ready)
	if err := <-ready; err != nil {
		<-r.exited
		return nil, err
	}
	return r, nil
}

// serve hands conn, a relay socket of p's UDP client allocation, to a
// reactor and waits until the allocation is removed and the reactor has
// let go of the socket. false: no reactor (the caller reads the socket
// itself).
func (p *uringPool) serve(pr *peerReader, conn *net.UDPConn) bool {
	if !p.start() {
		return false
	}
	sock, err := p.newSock(pr, conn)
	if err != nil {
		p.s.log.Warn("relay socket not given to io_uring; reading it with epoll", "err", err)
		return false
	}
	p.mu.Lock()
	r := p.rs[p.next%uint32(len(p.rs))]
	p.next++
	p.mu.Unlock()
	// From here on the netpoller never hears of this socket again (no
	// goroutine waits on it: sends never wait, reads are the ring's), so
	// that datagrams do not wake its thread for nothing.
	p.leaveNetpoller(conn)
	if !r.post(uringOp{add: sock}) {
		return true // stopping: the socket is closed with its allocation
	}
	p.mu.Lock()
	p.socks[conn] = sock
	p.mu.Unlock()
	select {
	case <-pr.a.Done():
	case <-sock.closed:
	}
	p.mu.Lock()
	if p.socks[conn] == sock {
		delete(p.socks, conn)
	}
	p.mu.Unlock()
	r.post(uringOp{remove: sock})
	<-sock.done
	return true
}

// serveListener hands a UDP listener socket without QUIC sharing to a
// reactor, which reads it with a multishot receive and relays what comes
// through lr, on the reactor's thread: the data plane's two directions
// then take one thread, and one io_uring_enter per batch. It returns when
// the socket is closed (Server's shutdown); false: no reactor.
func (p *uringPool) serveListener(so *udpSocket, lr *listenerReader) bool {
	if !so.out.unpolled || !p.start() {
		return false // not prepared by Server.startUring (a test's listener)
	}
	conn := so.out.conn
	fd, err := dupConn(conn)
	if err != nil {
		p.s.log.Warn("listener socket not given to io_uring; reading it with epoll", "err", err)
		return false
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		_ = unix.Close(fd)
		return false
	}
	sock := &uringSock{lr: lr, fd: fd, ownFD: true, done: make(chan struct{}), rc: rc, closed: make(chan struct{})}
	sock.msg.Namelen = uringNameRoom
	sock.msg.Controllen = uringControlRoom
	p.mu.Lock()
	p.socks[conn] = sock
	r := p.rs[p.next%uint32(len(p.rs))]
	p.next++
	p.mu.Unlock()
	p.s.mu.Lock()
	p.s.closers = append(p.s.closers, func() error { p.forget(conn); return nil })
	p.s.mu.Unlock()
	p.leaveNetpoller(conn)
	if !r.post(uringOp{add: sock}) {
		_ = unix.Close(fd)
		return true
	}
	<-sock.closed
	r.post(uringOp{remove: sock})
	<-sock.done
	return true
}

// leaveNetpoller takes conn's descriptor out of the Go runtime's epoll
// set. The runtime has no interface for it, so its epoll descriptor is
// found once, as the eventpoll descriptor whose /proc fdinfo lists conn's
// ("tfd: N"); the runtime's own removal when conn closes then finds
// nothing, which it ignores. Best effort: when the set is not found, the
// socket stays in it and each datagram costs a netpoller wake-up more.
func (p *uringPool) leaveNetpoller(conn *net.UDPConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.epfd == -1 {
			p.epfd = findEpoll(int(fd))
			if p.epfd < 0 {
				p.epfd = -2 // not found: do not look again
			}
		}
		if p.epfd >= 0 {
			_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		}
	})
}

// findEpoll returns the epoll descriptor of this process whose set holds
// fd, or -1.
func findEpoll(fd int) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	want := fmt.Sprintf("tfd: %8d ", fd)
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && strings.Contains(string(info), want) {
			return n
		}
	}
	return -1
}

// newSock prepares a relay socket for a reactor. Its descriptor is not
// duplicated (that would double the descriptors per allocation): the
// reactor uses it only inside the socket's RawConn.Control, where it
// cannot be closed, and a receive once submitted holds the socket itself.
func (p *uringPool) newSock(pr *peerReader, conn *net.UDPConn) (*uringSock, error) {
	clientFD, err := p.listenerFD(pr.udp.out.conn)
	if err != nil {
		return nil, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("relay: raw access to %v: %w", conn.LocalAddr(), err)
	}
	sock := &uringSock{p: pr, fd: -1, clientFD: clientFD, done: make(chan struct{}), rc: rc, closed: make(chan struct{})}
	sock.msg.Namelen = uringNameRoom
	sock.msg.Controllen = uringControlRoom
	sock.saLen = putSockaddr(&sock.clientSA, pr.udp.addr, p.s.zones)
	return sock, nil
}

// listenerFD returns the pool's duplicate of a listener socket, made on
// first use and closed when the pool stops.
func (p *uringPool) listenerFD(conn *net.UDPConn) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd, ok := p.dups[conn]; ok {
		return fd, nil
	}
	if p.stopd {
		return -1, errors.New("relay: stopping")
	}
	fd, err := dupConn(conn)
	if err != nil {
		return -1, err
	}
	p.dups[conn] = fd
	return fd, nil
}

// dupConn duplicates conn's descriptor (close-on-exec).
func dupConn(conn *net.UDPConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("relay: raw access to %v: %w", conn.LocalAddr(), err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("relay: duplicate %v: %w", conn.LocalAddr(), err)
	}
	if derr != nil {
		return -1, fmt.Errorf("relay: duplicate %v: %w", conn.LocalAddr(), derr)
	}
	return fd, nil
}

// stop stops the reactors (once every relay socket is let go of: after
// Server.relays) and closes the listener duplicates.
func (p *uringPool) stop() {
	p.mu.Lock()
	p.stopd = true
	p.mu.Unlock()
	p.once.Do(func() { close(p.janitorDone) }) // never started: none start now
	close(p.stopJanitor)
	<-p.janitorDone
	for _, r := range p.rs {
		r.post(uringOp{stop: true})
		<-r.exited
	}
	p.mu.Lock()
	for _, fd := range p.dups {
		_ = unix.Close(fd)
	}
	clear(p.dups)
	p.mu.Unlock()
}

// janitor ends the service of relay sockets closed while their
// allocation lives on, every uringJanitorPeriod, until the pool stops.
func (p *uringPool) janitor() {
	defer close(p.janitorDone)
	t := time.NewTicker(uringJanitorPeriod)
	defer t.Stop()
	for {
		select {
		case <-p.stopJanitor:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for conn, sock := range p.socks {
			if sock.rc.Control(func(uintptr) {}) != nil { // net.ErrClosed
				close(sock.closed)
				delete(p.socks, conn)
			}
		}
		p.mu.Unlock()
	}
}

// forget ends the service of conn, a relay socket just closed while its
// allocation lives on (a half deleted with Refresh, RFC 8656 §8.1), and
// returns once the reactor has let go of it: its port is then free.
func (p *uringPool) forget(conn *net.UDPConn) {
	p.mu.Lock()
	sock := p.socks[conn]
	if sock != nil {
		close(sock.closed)
		delete(p.socks, conn)
	}
	p.mu.Unlock()
	if sock != nil {
		<-sock.done
	}
}

// post queues op for the reactor and wakes it; false when it has exited.
func (r *reactor) post(op uringOp) bool {
	select {
	case <-r.exited:
		return false
	default:
	}
	r.mu.Lock()
	r.inbox = append(r.inbox, op)
	r.mu.Unlock()
	one := [8]byte{1}
	_, err := unix.Write(r.efd, one[:])
	return err == nil || errors.Is(err, unix.EAGAIN)
}

// run is the reactor's goroutine.
func (r *reactor) run(ready chan<- error) {
	defer close(r.exited)
	runtime.LockOSThread()
	// The thread stays locked: a ring with DEFER_TASKRUN belongs to it;
	// the goroutine's end then ends the thread too.
	if err := r.setup(); err != nil {
		r.teardown()
		ready <- err
		return
	}
	ready <- nil
	r.armWake()
	var lastLog, lastYield time.Time
	busy := false
	for !r.stopping || r.live > 0 || r.inflight > 0 {
		var err error
		if busy {
			// Traffic: wait holding the processor (no hand-off between
			// threads at each wake-up), at most uringHeldUs, and let
			// the other goroutines have it at least that often.
			_, err = r.ring.EnterHeld(uringBatch, uringMinWaitUs, uringHeldUs)
		} else {
			// Idle: sleep in an ordinary system call until a completion.
			_, err = r.ring.EnterMinWait(uringBatch, uringMinWaitUs)
		}
		if err != nil {
			if now := time.Now(); now.Sub(lastLog) >= time.Second {
				lastLog = now
				r.p.s.log.Warn("io_uring_enter failed; retrying", "err", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		r.now = time.Now() // one clock read per batch
		r.mono = r.p.s.mono(r.now)
		busy = r.ring.Completions(r.complete) > 0
		if busy && r.now.Sub(lastYield) >= uringHeldUs*time.Microsecond {
			lastYield = r.now
			runtime.Gosched()
		}
		r.flushListeners()
		r.bufs.Publish()
		r.rearmAll()
		r.state.Store(uint64(r.held)<<32 | uint64(r.live-r.listeners))
	}
	r.teardown()
}

func (r *reactor) setup() error {
	if r.p.failSetup {
		return errors.New("relay: io_uring setup failed (test)")
	}
	var err error
	if r.ring, err = uring.New(uringSQEntries, uring.Options{CQEntries: uringCQEntries, DeferTaskrun: true}); err != nil {
		return err
	}
	if r.bufs, err = r.ring.NewBufRing(0, uringBufs, uringBufSize); err != nil {
		return err
	}
	if r.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("relay: eventfd: %w", err)
	}
	return nil
}

// teardown closes what setup made (the kernel cancels what is left in
// flight with the ring).
func (r *reactor) teardown() {
	if r.bufs != nil {
		_ = r.bufs.Close()
	}
	if r.ring != nil {
		_ = r.ring.Close()
	}
	if r.efd >= 0 {
		_ = unix.Close(r.efd)
	}
	for _, s := range r.socks { // only if stopped with sockets: never after Server.relays
		if s != nil {
			if s.ownFD {
				_ = unix.Close(s.fd)
			}
			close(s.done)
		}
	}
}

// sqe returns a submission entry, submitting what is queued when the
// queue is full.
func (r *reactor) sqe() *uring.SQE {
	for {
		if e := r.ring.SQE(); e != nil {
			return e
		}
		if _, err := r.ring.Enter(0, 0); err != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

func (r *reactor) armWake() {
	uring.PrepRead(r.sqe(), r.efd, r.wake[:], udWake)
}

// arm submits s's multishot receive. A relay socket's is prepared and
// submitted inside its RawConn's Control, so that its descriptor number
// cannot be closed and reused under the entry; once submitted, the
// request holds the socket. A socket found closed is let go of.
func (r *reactor) arm(s *uringSock) {
	if s.ownFD {
		s.armed = true
		uring.PrepRecvMsgMultishot(r.sqe(), s.fd, &s.msg, r.bufs.Group(), udRecv|uint64(s.slot))
		return
	}
	if s.armFn == nil {
		s.armFn = func(fd uintptr) {
			s.armed = true
			uring.PrepRecvMsgMultishot(r.sqe(), int(fd), &s.msg, r.bufs.Group(), udRecv|uint64(s.slot))
			if _, err := r.ring.Enter(0, 0); err != nil {
				r.p.s.log.Warn("io_uring submit failed", "err", err)
			}
		}
		s.icmpFn = func(fd uintptr) { s.p.ReadErrors(fd) }
	}
	if s.rc.Control(s.armFn) != nil && !s.closing {
		// Closed (net.ErrClosed) while its allocation lives on: the
		// janitor ends it; until then nothing is armed.
		s.armed = false
	}
}

// rearmAll re-arms the receives that ended (no buffer was free, an error
// was reported) after the batch's buffers went back.
func (r *reactor) rearmAll() {
	for i, s := range r.rearm {
		if !s.closing && !s.armed {
			r.arm(s)
		}
		r.rearm[i] = nil
	}
	r.rearm = r.rearm[:0]
}

// handle is one completion.
func (r *reactor) handle(c *uring.CQE) {
	switch c.UserData & udKind {
	case udRecv:
		r.received(r.socks[uint32(c.UserData)], c)
	case udSend:
		id := uint16(c.UserData)
		sl := &r.sends[id]
		if c.Res >= 0 {
			sl.ctr.Add(sl.payload)
		} else {
			r.p.s.stats.drop(DropWriteFailed)
		}
		sl.ctr, sl.iov.Base = nil, nil
		r.bufs.Recycle(id)
		r.held--
		r.inflight--
	case udWake:
		r.mailbox()
		if !r.stopping || r.live > 0 {
			r.armWake()
		}
	case udCancel:
		// The receive's own completion follows (or came first).
	}
}

// mailbox takes the operations posted since the last wake.
func (r *reactor) mailbox() {
	r.mu.Lock()
	r.work, r.inbox = r.inbox, r.work[:0]
	r.mu.Unlock()
	for i, op := range r.work {
		switch {
		case op.add != nil:
			s := op.add
			if n := len(r.free); n > 0 {
				s.slot = r.free[n-1]
				r.free = r.free[:n-1]
				r.socks[s.slot] = s
			} else {
				s.slot = uint32(len(r.socks))
				r.socks = append(r.socks, s)
			}
			r.live++
			if s.lr != nil {
				r.listeners++
			}
			r.arm(s)
		case op.remove != nil:
			s := op.remove
			s.closing = true
			if s.armed {
				uring.PrepCancel(r.sqe(), udRecv|uint64(s.slot), udCancel)
			} else {
				r.release(s)
			}
		case op.stop:
			r.stopping = true
			for _, s := range r.socks {
				if s != nil && !s.closing {
					s.closing = true
					if s.armed {
						uring.PrepCancel(r.sqe(), udRecv|uint64(s.slot), udCancel)
					} else {
						r.release(s)
					}
				}
			}
		}
		r.work[i] = uringOp{}
	}
}

// release lets go of a socket whose receive has ended.
func (r *reactor) release(s *uringSock) {
	if s.ownFD {
		_ = unix.Close(s.fd)
	}
	r.socks[s.slot] = nil
	r.free = append(r.free, s.slot)
	r.live--
	if s.lr != nil {
		r.listeners--
	}
	close(s.done)
}

// received handles a receive completion of s.
func (r *reactor) received(s *uringSock, c *uring.CQE) {
	if id, ok := c.Buffer(); ok {
		r.held++
		switch {
		case s.lr != nil:
			if c.Res >= 0 {
				r.toListener(s, id, int(c.Res))
			}
			r.bufs.Recycle(id) // copied into the listener's batch
			r.held--
		case c.Res < 0 || !r.forward(s, id, int(c.Res)):
			r.bufs.Recycle(id)
			r.held--
		}
	}
	p := s.p
	if p != nil && (c.Res < 0 && udpio.ICMPErrno(syscall.Errno(-c.Res)) || p.errs.Load()) {
		_ = s.rc.Control(s.icmpFn) // RFC 8656 §11.5 (icmp_linux.go); closed: nothing to read
	}
	if !c.More() {
		s.armed = false
		switch e := syscall.Errno(-c.Res); {
		case s.closing:
			r.release(s)
		case c.Res >= 0, e == unix.ENOBUFS, e == unix.EINTR, e == unix.EAGAIN, udpio.ICMPErrno(e):
			r.rearm = append(r.rearm, s) // after this batch's buffers are back
		default:
			// Not re-armed (it would fail again at once, in a loop): the
			// allocation's packets from peers are lost until it ends.
			r.p.s.log.Warn("io_uring receive failed", "socket", s.rc != nil, "err", e)
		}
	}
}

// toListener puts a datagram a listener socket received into its
// reader's batch, which is relayed (listenerReader.relay: ChannelData and
// Send indications to peers, requests to the workers) when it is full and
// at the end of the reactor's batch.
func (r *reactor) toListener(s *uringSock, id uint16, used int) {
	b := s.lr.b
	m, ok := uring.ParseRecvMsg(r.bufs.Buf(id), used, uringNameRoom, uringControlRoom)
	if !ok || m.Truncated() || m.Namelen > uringNameRoom {
		return
	}
	from, ok := udpio.DecodeSockaddr((*unix.RawSockaddrInet6)(unsafe.Pointer(&r.bufs.Buf(id)[uring.RecvMsgOutSize])), b.Zones)
	if !ok || !b.Put(s.pending, m.Payload, from) {
		return
	}
	if s.pending == 0 {
		r.lpend = append(r.lpend, s)
	}
	s.pending++
	if s.pending == len(b.Bufs) {
		r.flushListener(s)
	}
}

// flushListener relays what s's batch holds.
func (r *reactor) flushListener(s *uringSock) {
	if s.pending == 0 {
		return
	}
	s.lr.b.N = s.pending
	s.lr.relay()
	s.pending = 0
}

// flushListeners relays what every listener socket's batch holds.
func (r *reactor) flushListeners() {
	for i, s := range r.lpend {
		r.flushListener(s)
		r.lpend[i] = nil
	}
	r.lpend = r.lpend[:0]
}

// forward is peerReader.forward for one datagram in buffer id, to a UDP
// client: the same checks, the header written in place, and a send entry
// that gives the buffer back when it completes. false: dropped, the
// buffer is free again.
func (r *reactor) forward(s *uringSock, id uint16, used int) bool {
	const headroom = proto.DataIndicationHeadroom
	buf := r.bufs.Buf(id)
	m, ok := uring.ParseRecvMsg(buf, used, uringNameRoom, uringControlRoom)
	if !ok || m.Truncated() || m.Namelen > uringNameRoom {
		return false
	}
	from, ok := udpio.DecodeSockaddr((*unix.RawSockaddrInet6)(unsafe.Pointer(&buf[uring.RecvMsgOutSize])), nil)
	if !ok {
		return false
	}
	p, srv, a := s.p, r.p.s, s.p.a
	n := len(m.Payload)
	permitted, number, bound := a.Route(from, r.now)
	switch {
	case !permitted:
		srv.stats.drop(DropNoPermission) // RFC 8656 §11.3: silently discarded
		return false
	case !srv.allowPeer(from): // a reload may have denied the peer since its permission
		return false
	case !bound && n > proto.MaxDataIndicationPayload:
		srv.stats.drop(DropTooLarge)
		return false
	case !a.AllowToClient(n, r.mono):
		srv.stats.drop(DropBandwidth)
		return false
	}
	room := buf[m.PayloadOffset-headroom:]
	var frame []byte
	if bound {
		frame = proto.PutChannelData(room[headroom-proto.ChannelDataHeaderSize:], number, n, false)
	} else if frame = proto.PutDataIndication(room, n, from, proto.NewTransactionID(p.rng)); frame == nil {
		srv.stats.drop(DropMalformed)
		return false
	}
	sl := &r.sends[id]
	sl.sa = s.clientSA
	sl.msg.Namelen = s.saLen
	sl.iov.Base = &frame[0]
	sl.iov.SetLen(len(frame))
	sl.ctr, sl.payload = &a.ToClient, n
	uring.PrepSendMsg(r.sqe(), s.clientFD, &sl.msg, unix.MSG_DONTWAIT, udSend|uint64(id))
	r.inflight++
	return true
}

// putSockaddr writes ap into sa as sockaddr_in (IPv4, also for a
// dual-stack socket) or sockaddr_in6 and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, zones *udpio.Zones) uint32 {
	*sa = unix.RawSockaddrInet6{}
	if addr := ap.Addr(); addr.Is4() || addr.Is4In6() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		sa4.Addr = addr.Unmap().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = ap.Addr().As16()
	sa.Scope_id = zones.Index(ap.Addr().Zone())
	return unix.SizeofSockaddrInet6
}
