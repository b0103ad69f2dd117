// Command postern-load is a TURN load generator and the measuring
// instrument behind scripts/bench. It works against any TURN server with
// long-term credentials (Postern, coturn, ...), on loopback or a lab network.
//
// In relay mode it sets up N allocations over UDP, TCP or TLS, each with its
// own UDP peer socket bound to a channel (or a permission, with
// -indications), and streams fixed-size packets client -> relay -> peer; the
// peer echoes each one back, so every packet crosses the relay twice and the
// client measures the round trip. It sends either at a fixed total rate
// (-rate: one packet at a time, paced to the nanosecond on UDP) or flat out
// (a window of packets in flight per allocation, refilled as echoes return).
// It reports relayed packets per second and Mbit/s (both directions), loss,
// RTT quantiles, and, given the server's -pid, the server's CPU seconds over
// the measured interval (from /proc/PID/stat), CPU seconds per million
// relayed packets, and its resident memory (VmRSS, VmHWM).
//
// Setup mode measures authenticated Allocate/s with -concurrency clients
// (each: 401 challenge, Allocate, Refresh 0, on a fresh socket). Idle mode
// holds N allocations and reports the server's memory per allocation. Ping
// waits for a server to answer STUN.
//
// The generator must cost less per packet than the server it measures. Its
// UDP data path is one epoll loop per thread over raw non-blocking sockets,
// reading with recvmmsg and sending each batch as one UDP GSO send
// (package udpio, the server's own): the server still receives separate
// datagrams. Run it pinned
// to other cores than the server (taskset) and check that the server's CPU
// use is near 100% before calling a flat-out figure the server's limit.
//
// Linux only (epoll, recvmmsg, GSO, /proc), except the table subcommand.
package main
