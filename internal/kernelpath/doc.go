// Package kernelpath is the relay's kernel fast path: an eBPF program at
// the TCX ingress hook of the server's interfaces that relays the
// datagrams of bound channels (RFC 8656 §12) inside the kernel, ChannelData
// from a client becoming the UDP datagram from its relayed address to the
// peer and back, without a system call, a copy or a wake-up in user space.
//
// User space decides what may go this way: it installs a Binding (both
// directions of one channel of one UDP allocation) only where it would
// relay the datagrams itself, and bounds it by the earliest of the
// channel's, the permission's and the allocation's expiry, which the
// program checks per packet; anything else (requests, Send and Data
// indications, expired or unknown bindings, mixed families, padded
// ChannelData, a local sender's datagrams whose checksum is left to the
// device)
// goes up to the relay's sockets unchanged. Counts reports what a binding
// relayed, for the allocation's counters.
//
// The program is kernelpath.c, compiled by bpf2go into
// kernelpath_bpfel.o and its loader (go generate; the object is
// committed, so that building needs no clang). Linux only; it needs
// CAP_BPF and CAP_NET_ADMIN (or root) and a kernel with TCX (6.6) and its
// BTF (the program reads the buffer's checksum state through CO-RE).
package kernelpath
