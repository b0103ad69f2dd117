// Package uring is the small part of Linux io_uring (io_uring(7)) the relay
// needs, on golang.org/x/sys/unix system calls: a ring (setup, the shared
// submission and completion queues), a provided-buffer ring
// (IORING_REGISTER_PBUF_RING), and the preparation of the few requests the
// relay makes: multishot RECVMSG with buffer selection, SENDMSG, READ and
// ASYNC_CANCEL. It knows nothing of TURN.
//
// A Ring belongs to one goroutine, and, when made with SingleIssuer (and
// DeferTaskrun), to that goroutine's OS thread: the caller locks it
// (runtime.LockOSThread) before New and keeps it locked until Close.
//
// Memory the kernel writes into (the rings, the provided buffers) is mapped
// with mmap, outside the Go heap. Memory a request points at (a msghdr, its
// iovec and sockaddr) is the caller's, and must stay referenced until the
// request's last completion.
package uring
