// Package udpio is batched UDP I/O on Linux, for the relay's data plane
// (package relay) and for the load generator that measures it
// (cmd/postern-load): recvmmsg into batches of buffers, sendmsg with UDP
// generic segmentation offload (GSO) from runs of equal-sized datagrams,
// sendmmsg and plain writes on connected descriptors, and the sockaddr
// encoding and decoding these need, with IPv6 zones named by a cache
// (Zones). It knows nothing of STUN or TURN: what arrives is handed to a
// Reader, what leaves is given by the caller, who also counts it.
//
// Elsewhere than Linux the same API works a datagram at a time through the
// net package (Batched is false): a Batch holds one datagram, a Run's
// Control is empty so its datagrams are sent one by one, and a listener is
// one socket (Sockets).
//
// # Invariants
//
//   - Per packet, nothing allocates and nothing blocks: Batch.Recv,
//     Batch.Msg, Sender.Send, Run.Add and Run.Joins are raw system calls
//     (MSG_DONTWAIT, no scheduler bookkeeping: that wakes Go's sysmon
//     thread, a context switch per packet at moderate rates) and copies into
//     buffers made once. A zone is looked up once per interface and then
//     read from an immutable map. Tests named *Alloc* and AllocsPerRun
//     checks hold this.
//   - Sender.Send goes through the socket's syscall.RawConn, so the
//     descriptor cannot be closed under it; a full send buffer is an error
//     (EAGAIN) for the caller to count, never a wait.
//   - Batch, Run and Sender belong to one goroutine at a time; Zones is safe
//     for concurrent use (lock-free reads, serialised writers, at most 256
//     entries).
//   - A Run holds datagrams of one socket to one destination, equal sizes
//     but a shorter last one, at most MaxGSOSegments of at most
//     MaxGSOSegment bytes (a 1500-byte MTU) and MaxGSOBytes in all. Its first
//     datagram is not copied: the caller's buffer stays untouched until
//     Reset.
//   - ReadLoop waits only in the netpoller, takes a batch from its Reader
//     only while the socket is readable, and skips the errors that report
//     an earlier send's ICMP error (ICMPErrno) instead of failing: with an
//     ErrorQueue it has the reader read the socket's error queue then, and
//     never per datagram.
package udpio
