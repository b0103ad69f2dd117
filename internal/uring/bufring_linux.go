package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// ringBuf is struct io_uring_buf; the ring's tail is the resv field of
// entry 0 (struct io_uring_buf_ring).
type ringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// BufRing is a provided-buffer ring: buffers the kernel picks from for
// requests with buffer selection (a multishot receive), given back with
// Recycle and Publish. It belongs to its ring's goroutine.
type BufRing struct {
	r     *Ring
	group uint16
	mask  uint16
	size  int
	ring  []byte // the io_uring_buf entries, page aligned
	mem   []byte // entries * size bytes of buffers
	bufs  []ringBuf
	tail  uint16 // local tail, published by Publish
}

// NewBufRing maps entries (a power of two, at most 32768) buffers of size
// bytes each, registers them as buffer group group of r
// (IORING_REGISTER_PBUF_RING, Linux 5.19) and provides them all. The
// memory is touched only where the kernel writes datagrams.
func (r *Ring) NewBufRing(group uint16, entries, size int) (*BufRing, error) {
	if entries <= 0 || entries > 1<<15 || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("uring: buffer ring of %d entries: want a power of two up to 32768", entries)
	}
	ringMem, err := unix.Mmap(-1, 0, entries*int(unsafe.Sizeof(ringBuf{})), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap buffer ring: %w", err)
	}
	mem, err := unix.Mmap(-1, 0, entries*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		_ = unix.Munmap(ringMem)
		return nil, fmt.Errorf("uring: mmap buffers: %w", err)
	}
	b := &BufRing{r: r, group: group, mask: uint16(entries - 1), size: size, ring: ringMem, mem: mem,
		bufs: unsafe.Slice((*ringBuf)(unsafe.Pointer(&ringMem[0])), entries)}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&ringMem[0]))), ringEntries: uint32(entries), bgid: group}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing,
		uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if e != 0 {
		b.unmap()
		return nil, fmt.Errorf("uring: IORING_REGISTER_PBUF_RING: %w", e)
	}
	for i := range entries {
		b.Recycle(uint16(i))
	}
	b.Publish()
	return b, nil
}

// Size is each buffer's size.
func (b *BufRing) Size() int { return b.size }

// Group is the buffer group ID.
func (b *BufRing) Group() uint16 { return b.group }

// Buf returns buffer id.
func (b *BufRing) Buf(id uint16) []byte {
	off := int(id) * b.size
	return b.mem[off : off+b.size : off+b.size]
}

// Recycle queues buffer id for the kernel again; Publish hands it over.
func (b *BufRing) Recycle(id uint16) {
	e := &b.bufs[b.tail&b.mask]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.mem[int(id)*b.size])))
	e.len = uint32(b.size)
	e.bid = id
	b.tail++
}

// Publish makes the recycled buffers visible to the kernel. The ring's
// 16-bit tail shares a 32-bit word with entry 0's buffer ID, both ours to
// write (the kernel only reads them), so one atomic 32-bit store (a
// release: the entries written before are seen before the tail) publishes
// it. Little-endian, as every Linux port Go has io_uring on.
func (b *BufRing) Publish() {
	word := uint32(b.bufs[0].bid) | uint32(b.tail)<<16
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b.ring[12])), word)
}

// Close unregisters the group and unmaps its memory; no request may use
// it any more (the ring's requests are cancelled, or the ring is closed).
func (b *BufRing) Close() error {
	reg := bufReg{bgid: b.group}
	var err error
	if b.r.fd >= 0 {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(b.r.fd), unregisterPbufRing,
			uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
		if e != 0 {
			err = fmt.Errorf("uring: IORING_UNREGISTER_PBUF_RING: %w", e)
		}
	}
	b.unmap()
	return err
}

func (b *BufRing) unmap() {
	if b.ring != nil {
		_ = unix.Munmap(b.ring)
		b.ring = nil
	}
	if b.mem != nil {
		_ = unix.Munmap(b.mem)
		b.mem = nil
	}
}
