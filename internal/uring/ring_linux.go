package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel constants (include/uapi/linux/io_uring.h).
const (
	opRead        = 22
	opSendmsg     = 9
	opRecvmsg     = 10
	opAsyncCancel = 14
	opNop         = 0

	// SQE flags.
	sqeBufferSelect = 1 << 5

	// recvmsg ioprio flags.
	recvMultishot = 1 << 1

	// CQE flags.
	cqeFBuffer = 1 << 0
	cqeFMore   = 1 << 1

	setupCQSize       = 1 << 3
	setupClamp        = 1 << 4
	setupSubmitAll    = 1 << 7
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
	featExtArg     = 1 << 8
	featMinTimeout = 1 << 15

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	registerPbufRing   = 22
	unregisterPbufRing = 23
)

// params is struct io_uring_params.
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16 // buf_group with IOSQE_BUFFER_SELECT
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// More reports whether a multishot request stays armed after this
// completion (IORING_CQE_F_MORE).
func (c *CQE) More() bool { return c.Flags&cqeFMore != 0 }

// Buffer returns the ID of the provided buffer the completion used, if any
// (IORING_CQE_F_BUFFER).
func (c *CQE) Buffer() (uint16, bool) { return uint16(c.Flags >> 16), c.Flags&cqeFBuffer != 0 }

// Options are a ring's setup choices.
type Options struct {
	// CQEntries is the completion queue's size (rounded up to a power of
	// two by the kernel); 0: twice the submission queue's.
	CQEntries uint32
	// DeferTaskrun (with IORING_SETUP_SINGLE_ISSUER) defers the kernel's
	// completion work to the next Enter with wait: receives are done in
	// one batch in the caller's Enter, not at each packet's arrival. The
	// ring must then be used from the OS thread that made it. New falls
	// back to a ring without it on a kernel that refuses it (before 6.1).
	DeferTaskrun bool
}

// Ring is one io_uring instance.
type Ring struct {
	fd       int
	features uint32
	flags    uint32
	ring     []byte // SQ and CQ rings (one mapping with FEAT_SINGLE_MMAP)
	cqRing   []byte // the CQ ring when mapped apart
	sqeMem   []byte

	sqHead, sqTail *uint32
	sqMask         uint32
	sqEntries      uint32
	sqes           []SQE
	sqLocal        uint32 // tail of SQEs handed out, not yet published

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []CQE

	arg getEventsArg
	ts  unix.Timespec

	files int // registered file slots (files_linux.go)
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// New sets up a ring of at least entries submission queue entries.
func New(entries uint32, o Options) (*Ring, error) {
	var p params
	p.flags = setupClamp | setupSubmitAll
	if o.CQEntries != 0 {
		p.flags |= setupCQSize
		p.cqEntries = o.CQEntries
	}
	base := p
	if o.DeferTaskrun {
		p.flags |= setupSingleIssuer | setupDeferTaskrun
	}
	fd, err := setup(entries, &p)
	if err != nil && o.DeferTaskrun {
		p = base
		p.flags |= setupCoopTaskrun
		fd, err = setup(entries, &p)
	}
	if err != nil {
		return nil, fmt.Errorf("uring: io_uring_setup: %w", err)
	}
	r := &Ring{fd: fd, features: p.features, flags: p.flags}
	if err := r.mmap(&p); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

func setup(entries uint32, p *params) (int, error) {
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func (r *Ring) mmap(p *params) error {
	if p.features&featSingleMmap == 0 || p.features&featNoDrop == 0 {
		// Before 5.4/5.5: too old to be worth a second code path.
		return errors.New("uring: kernel lacks IORING_FEAT_SINGLE_MMAP or NODROP")
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("uring: mmap rings: %w", err)
	}
	r.ring = mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("uring: mmap SQEs: %w", err)
	}
	r.sqeMem = sqeMem
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail = at(p.sqOff.head), at(p.sqOff.tail)
	r.sqMask, r.sqEntries = *at(p.sqOff.ringMask), *at(p.sqOff.ringEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	// The SQ array maps ring slots to SQEs: identity, set once.
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.cqHead, r.cqTail = at(p.cqOff.head), at(p.cqOff.tail)
	r.cqMask = *at(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&mem[p.cqOff.cqes])), p.cqEntries)
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	return nil
}

// Fd is the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// Deferred reports whether the ring defers completion work to Enter
// (Options.DeferTaskrun was granted).
func (r *Ring) Deferred() bool { return r.flags&setupDeferTaskrun != 0 }

// Close unmaps and closes the ring; the kernel cancels what is in flight.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ring != nil {
		_ = unix.Munmap(r.ring)
		r.ring = nil
	}
	if r.fd >= 0 {
		err := unix.Close(r.fd)
		r.fd = -1
		return err
	}
	return nil
}

// SQE returns a zeroed submission queue entry to fill, or nil when the
// queue is full (Submit first). It is submitted by the next Submit or Enter.
func (r *Ring) SQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocal-head >= r.sqEntries {
		return nil
	}
	e := &r.sqes[r.sqLocal&r.sqMask]
	*e = SQE{}
	r.sqLocal++
	return e
}

// Pending is the number of entries handed out and not yet submitted.
func (r *Ring) Pending() uint32 { return r.sqLocal - atomic.LoadUint32(r.sqTail) }

// MinWait reports whether the kernel takes EnterHeld's minimum wait
// (IORING_FEAT_MIN_TIMEOUT, Linux 6.12).
func (r *Ring) MinWait() bool { return r.features&featMinTimeout != 0 }

// EnterHeld is Enter that batches completions, as a raw system call
// bounded by maxWaitUs: it waits until wait completions are ready or
// minWaitUs microseconds have passed, so a busy ring returns about once
// per minWaitUs with what came meanwhile. An idle one returns then too,
// with nothing (Linux 6.18 measured here): to sleep until a completion,
// use Enter(1, 0). The calling goroutine keeps its processor while it
// waits, so that waking up costs no hand-off of the processor between
// threads; the caller bounds how long others wait for it with maxWaitUs.
// Without MinWait it waits for one completion, up to maxWaitUs.
func (r *Ring) EnterHeld(wait, minWaitUs, maxWaitUs uint32) (int, error) {
	if !r.MinWait() {
		minWaitUs, wait = 0, 1
	}
	n := r.Pending()
	atomic.StoreUint32(r.sqTail, r.sqLocal)
	r.ts = unix.NsecToTimespec(int64(maxWaitUs) * 1000)
	r.arg = getEventsArg{minWait: minWaitUs, ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	got, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), uintptr(wait),
		enterGetEvents|enterExtArg, uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
	return enterResult(got, e)
}

// enterResult maps io_uring_enter's result: EINTR and ETIME are no
// error (the caller reads the completion queue either way), nor are
// EBUSY/EAGAIN (completions must be reaped first; the entries stay
// published and go with the next enter).
func enterResult(got uintptr, e unix.Errno) (int, error) {
	switch e {
	case 0:
		return int(got), nil
	case unix.EINTR, unix.ETIME, unix.EBUSY, unix.EAGAIN:
		return 0, nil
	}
	return 0, fmt.Errorf("uring: io_uring_enter: %w", e)
}

// Enter publishes the pending entries, submits them and, when wait > 0,
// waits until at least wait completions are ready (with a timeout when
// timeoutNs > 0, after which it returns with fewer). It returns the
// number submitted. A wait is made as an ordinary (blocking) system call,
// a call without wait as a raw one (it does not block). EINTR and ETIME
// are not errors: the caller looks at the completion queue either way.
func (r *Ring) Enter(wait uint32, timeoutNs int64) (int, error) {
	n := r.Pending()
	atomic.StoreUint32(r.sqTail, r.sqLocal)
	flags := uintptr(0)
	if wait > 0 || r.Deferred() {
		flags |= enterGetEvents
	}
	var arg, argSz uintptr
	if wait > 0 && timeoutNs > 0 && r.features&featExtArg != 0 {
		r.ts = unix.NsecToTimespec(timeoutNs)
		r.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		arg, argSz = uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg)
		flags |= enterExtArg
	}
	var (
		got uintptr
		e   unix.Errno
	)
	if wait > 0 {
		got, _, e = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), uintptr(wait), flags, arg, argSz)
	} else {
		got, _, e = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, flags, 0, 0)
	}
	return enterResult(got, e)
}

// Completions calls fn for each ready completion, in order, and then
// marks them consumed. fn must not keep the *CQE. It returns how many.
func (r *Ring) Completions(fn func(*CQE)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for i := head; i != tail; i++ {
		fn(&r.cqes[i&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, tail)
	return int(tail - head)
}

// Ready is the number of completions waiting.
func (r *Ring) Ready() uint32 { return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead) }

// PrepRecvMsgMultishot makes e a multishot RECVMSG on fd: each datagram
// completes with a buffer of group, laid out as io_uring_recvmsg_out, the
// name (msg.Namelen reserved), the control data (msg.Controllen reserved)
// and the payload (ParseRecvMsg). msg must stay referenced until the last
// completion (one without More).
func PrepRecvMsgMultishot(e *SQE, fd int, msg *unix.Msghdr, group uint16, userData uint64) {
	e.Opcode = opRecvmsg
	e.Fd = int32(fd)
	e.Addr = uint64(uintptr(unsafe.Pointer(msg)))
	e.Len = 1
	e.Flags = sqeBufferSelect
	e.BufIndex = group
	e.IOPrio = recvMultishot
	e.UserData = userData
}

// PrepSendMsg makes e a SENDMSG of msg on fd with flags (MSG_DONTWAIT: a
// full send buffer completes with EAGAIN at once instead of waiting). msg,
// its iovec, name, control data and buffers must stay untouched until the
// completion.
func PrepSendMsg(e *SQE, fd int, msg *unix.Msghdr, flags uint32, userData uint64) {
	e.Opcode = opSendmsg
	e.Fd = int32(fd)
	e.Addr = uint64(uintptr(unsafe.Pointer(msg)))
	e.Len = 1
	e.OpFlags = flags
	e.UserData = userData
}

// PrepRead makes e a READ of len(buf) bytes from fd into buf, which must
// stay referenced until the completion.
func PrepRead(e *SQE, fd int, buf []byte, userData uint64) {
	e.Opcode = opRead
	e.Fd = int32(fd)
	e.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	e.Len = uint32(len(buf))
	e.Off = ^uint64(0) // the file's position: an eventfd has none
	e.UserData = userData
}

// PrepCancel makes e an ASYNC_CANCEL of the request whose user data is
// target.
func PrepCancel(e *SQE, target, userData uint64) {
	e.Opcode = opAsyncCancel
	e.Fd = -1
	e.Addr = target
	e.UserData = userData
}

// PrepNop makes e a NOP.
func PrepNop(e *SQE, userData uint64) {
	e.Opcode = opNop
	e.Fd = -1
	e.UserData = userData
}
