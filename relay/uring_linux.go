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

// The io_uring reactor (Config.IO): the data plane of allocations of UDP
// clients, both directions, in batches across allocations.
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
// completes. Consecutive datagrams to one address leave in one GSO run
// (uring_run_linux.go).
//
// The reactors also read the UDP listener sockets without QUIC sharing
// (serveListener), and a relay socket goes to the reactor of its client's
// listener socket. A client's ChannelData then leaves from its receive
// buffer (toPeer: relayChannelDataAt's checks, then a SENDMSG entry on the
// relay socket, which the ring names by its registered file slot);
// anything else is copied into the socket's listenerReader batch and
// relayed as the listener goroutine would (Send indications to peers,
// requests to the worker pool). Under traffic a reactor waits holding its
// processor (a raw io_uring_enter bounded to uringHeldUs, then
// runtime.Gosched): an ordinary blocking call would have the runtime hand
// the processor to another thread and back at every wake-up, which
// measured more than the system calls saved (BENCHMARKS.md). Idle, it
// sleeps in an ordinary call until a completion.
//
// Each relay socket still has its goroutine (relayFromSocket): it hands
// the socket to a reactor and waits for the allocation's end, then has the
// reactor cancel the receive and waits for its last completion, so that
// neither a buffer nor a ring entry outlives the allocation. The ring holds
// a relay socket in a registered file slot (its own reference, cleared
// when the reactor lets go of it) and a listener socket as a duplicate
// descriptor, so a socket closed elsewhere never has its number reused
// under a queued entry.

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
	// only where datagrams are written (a page or two each). A receive
	// that finds none free ends (ENOBUFS) and is re-armed after the
	// batch: with 512, 1000 allocations at 50 pkt/s met that tens to
	// hundreds of times in 6 s, each a latency spike (BENCHMARKS.md).
	uringBufs    = 2048
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
	// its own (no wait measured 40 % more CPU per packet at 1000 x 50
	// pkt/s). 100 µs cost no more CPU than 200 µs there and halved the
	// RTT p50 (the peers' generator reads smaller bursts); it is far
	// below the jitter buffers of media (tens of milliseconds).
	uringBatch     = 256
	uringMinWaitUs = 100
	// uringHeldUs bounds a wait that keeps the processor (under traffic),
	// and how long the other goroutines wait for it: 1 ms.
	uringHeldUs = 1000
	// uringFewSockets relay sockets or fewer: no minimum wait (the
	// reactor returns at the first completion).
	uringFewSockets = 32
	// uringMaxReactors caps the reactors.
	uringMaxReactors = 16
	// uringFileSlots caps each ring's registered-file table (the relay
	// sockets it serves, by slot): a few bytes of kernel memory each.
	// Sockets in slots past it are served through their descriptor.
	uringFileSlots = 65536
)

// User data of the ring's requests: the kind in the top byte, a socket
// slot or buffer ID below.
const (
	udRecv   = 1 << 56
	udSend   = 2 << 56
	udWake   = 3 << 56
	udCancel = 4 << 56
	udRun    = 5 << 56
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
	epfd int
	// byListener is the reactor serving each listener socket, under mu:
	// the relay sockets of its clients go to the same one, so that a
	// client's ChannelData leaves from its relay socket's file slot.
	byListener  map[*net.UDPConn]*reactor
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

	socks []*uringSock // by slot
	// runs are GSO runs (uring_run_linux.go), freeRuns the unused ones;
	// staged is the send not yet submitted, which the next may join.
	runs     []uringRun
	freeRuns []uint32
	staged   uringStaged
	// relays are the relay sockets in file slots, by socket: where a
	// client's datagram to a peer leaves from (toPeer).
	relays    map[*net.UDPConn]*uringSock
	free      []uint32
	live      int
	sends     []uringSend // by buffer ID
	inflight  int
	rearm     []*uringSock
	lpend     []*uringSock // listener sockets with datagrams pending
	listeners int          // listener sockets among live
	stopping  bool
	exited    chan struct{}

	// direct counts client datagrams sent to peers from their receive
	// buffer (toPeer), for tests and the profile.
	direct   atomic.Uint64
	enters   atomic.Uint64    // waits (io_uring_enter) made, for tests
	gsoRuns  atomic.Uint64    // GSO runs sent (uring_run_linux.go), for tests
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
	conn          *net.UDPConn // a relay socket
	fixed         bool         // in the ring's file slot slot
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
	// fd is the socket sent from: a descriptor, or with fixed a file
	// slot (a relay socket's).
	fd    int
	fixed bool
	// A send to a peer: errs is its relay socket's ICMP flag (txRun.send:
	// the first send after an ICMP error fails with it and is made once
	// more); retried once made again.
	toPeer, retried bool
	errs            *atomic.Bool
}

// newUringPool returns the pool for mode ("auto" or "io_uring"; "epoll"
// has none). With "io_uring" a ring is tried at once, so that a kernel
// without it is an error at start rather than a silent fallback.
func newUringPool(s *Server, mode string) (*uringPool, error) {
	p := &uringPool{s: s, mode: mode, dups: map[*net.UDPConn]int{}, socks: map[*net.UDPConn]*uringSock{}, epfd: -1,
		byListener:  map[*net.UDPConn]*reactor{},
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
	r := &reactor{p: p, efd: -1, exited: make(chan struct{}), sends: make([]uringSend, uringBufs),
		relays: map[*net.UDPConn]*uringSock{}, runs: make([]uringRun, uringRuns)}
	for i := range r.runs {
		r.freeRuns = append(r.freeRuns, uint32(i))
	}
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
	r := p.byListener[pr.udp.out.conn]
	if r == nil {
		r = p.rs[p.next%uint32(len(p.rs))]
		p.next++
	}
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
	p.byListener[conn] = r
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
	sock := &uringSock{p: pr, fd: -1, clientFD: clientFD, done: make(chan struct{}), rc: rc, closed: make(chan struct{}), conn: conn}
	sock.msg.Namelen = uringNameRoom
	sock.msg.Controllen = uringControlRoom
	sock.saLen = putSockaddr(&sock.clientSA, pr.udp.addr, p.s.zones)
	sock.icmpFn = func(fd uintptr) { pr.ReadErrors(fd) }
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
		r.enters.Add(1)
		var err error
		if busy {
			// Traffic: wait holding the processor (no hand-off between
			// threads at each wake-up), at most uringHeldUs, and let
			// the other goroutines have it at least that often.
			// With few relay sockets a minimum wait only delays the
			// next datagram of a flow that waits for its echo (flat
			// out, the batch stays small however long it waits).
			wait, minWait := uint32(uringBatch), uint32(uringMinWaitUs)
			if r.live-r.listeners <= uringFewSockets {
				wait, minWait = 1, 0
			}
			_, err = r.ring.EnterHeld(wait, minWait, uringHeldUs)
		} else {
			// Idle: sleep in an ordinary system call until a
			// completion. Not with a minimum wait: that returns when
			// it ends even with nothing completed (ETIME), which idle
			// made ~8000 wake-ups a second, 18-28 % of a core.
			_, err = r.ring.Enter(1, 0)
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
		r.flushStaged()
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
	var lim unix.Rlimit
	slots := uringFileSlots
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(slots) {
		slots = int(lim.Cur) // the kernel's cap on a file table
	}
	if err := r.ring.RegisterFiles(slots); err != nil {
		// Served through descriptors: each client datagram to a peer is
		// then a sendmsg of the listener's reader (txRun).
		r.p.s.log.Info("io_uring: no registered files; relay sockets are used by descriptor", "err", err)
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
	if s.fixed {
		s.armed = true
		e := r.sqe()
		uring.PrepRecvMsgMultishot(e, -1, &s.msg, r.bufs.Group(), udRecv|uint64(s.slot))
		e.UseFixed(int(s.slot))
		return
	}
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
		switch {
		case c.Res >= 0:
			sl.ctr.Add(sl.payload)
		case sl.toPeer && !sl.retried && udpio.ICMPErrno(syscall.Errno(-c.Res)):
			// The relay socket's pending ICMP error, not this datagram's
			// (txRun.send): its peerReader reads it; the datagram goes
			// once more.
			sl.errs.Store(true)
			sl.retried = true
			r.inflight-- // counted again by prepSend
			r.prepSend(sl, id)
			return
		default:
			r.p.s.stats.drop(DropWriteFailed)
		}
		sl.ctr, sl.iov.Base, sl.errs = nil, nil, nil
		r.bufs.Recycle(id)
		r.held--
		r.inflight--
	case udRun:
		r.runDone(uint32(c.UserData), c.Res)
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
			r.register(s)
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

// register puts relay socket s in the ring's file slot of its own slot
// number, where there is one: its receive and the client's datagrams to
// peers then name it by slot, and the ring's reference keeps it open
// (whatever becomes of its descriptor) until release clears the slot.
func (r *reactor) register(s *uringSock) {
	if s.conn == nil || int(s.slot) >= r.ring.Files() {
		return
	}
	var err error
	if cerr := s.rc.Control(func(fd uintptr) { err = r.ring.SetFile(int(s.slot), int(fd)) }); cerr != nil || err != nil {
		return // closed already, or no room: served by descriptor
	}
	s.fixed = true
	r.relays[s.conn] = s
}

// release lets go of a socket whose receive has ended.
func (r *reactor) release(s *uringSock) {
	if s.ownFD {
		_ = unix.Close(s.fd)
	}
	if s.fixed {
		if err := r.ring.SetFile(int(s.slot), -1); err != nil {
			r.p.s.log.Warn("io_uring: relay socket's file slot not cleared", "err", err)
		}
		s.fixed = false
		delete(r.relays, s.conn)
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
			if c.Res < 0 || !r.toListener(s, id, int(c.Res)) {
				r.bufs.Recycle(id) // copied into the listener's batch, or dropped
				r.held--
			}
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

// toListener handles a datagram a listener socket received in buffer id:
// a client's ChannelData to a peer leaves from the buffer (toPeer, which
// keeps it: true); anything else is copied into the socket's reader's
// batch, which is relayed (listenerReader.relay: Send indications to
// peers, requests to the workers) when it is full and at the end of the
// reactor's batch.
func (r *reactor) toListener(s *uringSock, id uint16, used int) bool {
	b := s.lr.b
	m, ok := uring.ParseRecvMsg(r.bufs.Buf(id), used, uringNameRoom, uringControlRoom)
	if !ok || m.Truncated() || m.Namelen > uringNameRoom || len(m.Payload) == 0 {
		return false
	}
	from, ok := udpio.DecodeSockaddr((*unix.RawSockaddrInet6)(unsafe.Pointer(&r.bufs.Buf(id)[uring.RecvMsgOutSize])), b.Zones)
	if !ok {
		return false
	}
	if proto.Classify(m.Payload[0]) == proto.KindChannelData {
		if done, kept := r.toPeer(s, id, m.Payload, from); done {
			return kept
		}
	}
	if !b.Put(s.pending, m.Payload, from) {
		return false
	}
	if s.pending == 0 {
		r.lpend = append(r.lpend, s)
	}
	s.pending++
	if s.pending == len(b.Bufs) {
		r.flushListener(s)
	}
	return false
}

// toPeer is relayChannelDataAt for a client's ChannelData message pkt in
// buffer id, from the buffer: the same checks through the same functions
// (channelDataAllocation, channelPeer, admitToPeer), then a SENDMSG entry
// of the payload on the relay socket's file slot, which gives the buffer
// back when it completes. done is false when the relay socket is not in
// this ring's file table or the payload is empty (the caller then relays
// pkt as before); kept, whether the buffer is held by the send.
func (r *reactor) toPeer(s *uringSock, id uint16, pkt []byte, from netip.AddrPort) (done, kept bool) {
	srv := r.p.s
	a, number, payload, ok := srv.channelDataAllocation(allocations.FiveTuple{Client: from, Server: s.lr.so.l.local, Transport: allocations.UDP}, pkt)
	switch {
	case !ok:
		return true, false
	case len(payload) == 0:
		return false, false // an empty datagram: no iovec to point at, nor a GSO segment
	}
	peer, ok := srv.channelPeer(a, number, r.now)
	if !ok {
		return true, false // RFC 8656 §12.6: silently discarded
	}
	conn, _, errs := a.ConnFor(peer.Addr())
	relay := r.relays[conn]
	if relay == nil {
		return false, false
	}
	if !srv.admitToPeer(a, peer, len(payload), r.mono) {
		return true, false
	}
	sl := &r.sends[id]
	sl.msg.Namelen = putSockaddr(&sl.sa, peer, srv.zones)
	sl.iov.Base = &payload[0]
	sl.iov.SetLen(len(payload))
	sl.ctr, sl.payload = &a.ToPeer, len(payload)
	sl.fd, sl.fixed = int(relay.slot), true
	sl.toPeer, sl.retried, sl.errs = true, false, errs
	r.queue(id)
	r.direct.Add(1)
	return true, true
}

// prepSend submits sl, the send of buffer id's datagram alone, with the
// next enter.
func (r *reactor) prepSend(sl *uringSend, id uint16) {
	r.prepMsg(&sl.msg, sl.fd, sl.fixed, udSend|uint64(id))
}

// uringPrepSend makes e a send that fails at once (EAGAIN) rather than
// wait on a full socket buffer: the buffer goes back either way.
func uringPrepSend(e *uring.SQE, fd int, msg *unix.Msghdr, userData uint64) {
	uring.PrepSendMsg(e, fd, msg, unix.MSG_DONTWAIT, userData)
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
	sl.fd, sl.fixed, sl.toPeer = s.clientFD, false, false
	r.queue(id)
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
