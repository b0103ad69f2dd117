package uring

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Registered files (io_uring_register(2), IORING_REGISTER_FILES): a table
// of the ring's own references to files, which requests name by index
// (UseFixed) instead of by descriptor. The kernel then neither looks the
// descriptor up nor takes a reference per request, and a file in the
// table stays open for the ring, whatever becomes of its descriptor
// number, until its slot is cleared.
const (
	registerFiles       = 2
	registerFilesUpdate = 6

	sqeFixedFile = 1 << 0
)

// filesUpdate is struct io_uring_files_update.
type filesUpdate struct {
	offset uint32
	resv   uint32
	fds    uint64
}

// RegisterFiles gives the ring a table of n empty file slots, filled with
// SetFile.
func (r *Ring) RegisterFiles(n int) error {
	fds := make([]int32, n)
	for i := range fds {
		fds[i] = -1
	}
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFiles,
		uintptr(unsafe.Pointer(&fds[0])), uintptr(n), 0, 0); e != 0 {
		return fmt.Errorf("uring: register %d file slots: %w", n, e)
	}
	r.files = n
	return nil
}

// Files is the size of the file table (0: none registered).
func (r *Ring) Files() int { return r.files }

// SetFile puts the file fd refers to in slot (the ring's own reference:
// closing fd afterwards does not close the file), or, with fd -1, clears
// the slot, dropping that reference once the requests using it are done.
func (r *Ring) SetFile(slot int, fd int) error {
	v := int32(fd)
	u := filesUpdate{offset: uint32(slot), fds: uint64(uintptr(unsafe.Pointer(&v)))}
	got, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFilesUpdate,
		uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	if e != 0 {
		return fmt.Errorf("uring: set file slot %d: %w", slot, e)
	}
	if got != 1 {
		return fmt.Errorf("uring: set file slot %d: %d updated", slot, got)
	}
	return nil
}

// UseFixed makes e name the registered file in slot instead of a
// descriptor. Call it after the Prep function, which sets e.Fd.
func (e *SQE) UseFixed(slot int) {
	e.Fd = int32(slot)
	e.Flags |= sqeFixedFile
}
