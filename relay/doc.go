// Package relay is the TURN server proper: it binds the listeners (UDP, TCP,
// TLS, and TCP ports that carry both plain TURN and TURN/TLS), demultiplexes
// what arrives on them (RFC 7983), answers STUN Binding and TURN requests
// (RFC 8489, RFC 8656), and runs the packet relay between clients and peers.
//
// # Planes
//
// The control plane (Binding, Allocate, Refresh, CreatePermission,
// ChannelBind) may lock and allocate; it never runs on the goroutine that
// carries a UDP listener's media. UDP requests are copied into a bounded
// queue served by a small worker pool, and dropped when the queue is full
// (clients retransmit). Requests over TCP/TLS are answered on that
// connection's own goroutine, which only delays that client.
//
// The data plane (ChannelData, Send and Data indications) takes no lock and
// allocates nothing per packet in steady state: allocations are found in the
// shared table with lock-free reads, permissions and channels are read from
// immutable snapshots (package allocations), and the ChannelData or Data
// indication header is written into headroom in front of the payload, so a
// lone datagram is never copied. Copies are made only to batch: datagrams
// of a GSO run into the run's buffer, and the frames of one batch for a
// TCP/TLS client into one write, which serialises on that connection's own
// mutex. To a TLS client each frame is still a TLS record of its own (the
// records of a batch are gathered under the tls.Conn and leave in one
// write): clients such as coturn's turnutils_uclient read one record as
// one message.
//
// # Batched UDP I/O
//
// The cost of relaying is in the kernel, per datagram (BENCHMARKS.md), so the
// data plane hands it as few system calls and as few datagrams' worth of
// work as it can (udp.go, datapath.go, txrun.go). The system calls, their
// buffers and sockaddrs, and the GSO runs are package internal/udpio, which
// knows nothing of TURN and is shared with cmd/postern-load; this package
// decides what goes where and counts it:
//
//   - A UDP listener is min(GOMAXPROCS, 16) SO_REUSEPORT sockets, each read
//     by its own goroutine with recvmmsg, 32 datagrams at a time, with one
//     clock reading per batch.
//
//   - Consecutive datagrams of a batch from one socket to one destination
//     (ChannelData of one allocation to one peer, also from the frames
//     already buffered on a TCP/TLS connection; frames of one allocation
//     to its UDP client) form a run (udpio.Run) that leaves in one sendmsg
//     with UDP GSO: the kernel builds the datagrams from one buffer. A run
//     holds equal sizes, at most 64 datagrams of at most 1452 bytes; a
//     shorter datagram ends it. Without GSO (another OS, or a kernel that
//     refuses it, detected once) datagrams leave one by one.
//
//   - A relay socket's goroutine holds no buffer while it waits: when the
//     netpoller reports the socket readable, it borrows a receive batch and
//     a send run from a small lock-free cache, reads with recvmmsg, forwards,
//     and gives them back. Memory follows the number of busy loops, not the
//     number of allocations. To a TCP/TLS client the frames of one batch
//     leave in one write (to TLS, one record per frame in that write).
//
//   - The data plane's reads (recvmmsg) and sends (sendmsg) are raw system
//     calls, never waiting: the scheduler's bookkeeping around an ordinary
//     one wakes Go's sysmon thread whenever the process was idle, which at
//     moderate rates is once per packet and, on a server pinned to a core,
//     a context switch each (BENCHMARKS.md). Sends go through the socket's
//     RawConn (made once per socket), so a socket cannot close under them;
//     a send that finds the buffer full drops the datagram and counts it
//     (write_failed) instead of stalling the loop that serves every client.
//
//   - A relay socket has IP_RECVERR (IPV6_RECVERR), so ICMP errors from
//     peers wait in its error queue (RFC 8656 §11.5, icmp_linux.go). The
//     relay loop reads that queue only when recvmmsg reports the error, or
//     a send on the socket did (the send is then made again): never per
//     datagram.
//
//   - With Config.IO io_uring (auto where the kernel allows it; epoll by
//     default, BENCHMARKS.md), the relay sockets of UDP clients'
//     allocations and the UDP listener sockets (without QUIC sharing) are
//     read by one io_uring reactor per processor instead of a goroutine
//     each (uring_linux.go, package internal/uring): a multishot receive
//     on every socket with provided buffers, the same checks and in-place
//     header as peerReader.forward, sends to clients as ring entries; a
//     client's ChannelData leaves for its peer from its receive buffer
//     (the relay socket in a registered file slot), other listener
//     datagrams go through listenerReader.relay; consecutive datagrams to
//     one address leave in GSO runs; one io_uring_enter per batch.
//
// Runs keep each client's packet order: Send indications join the run like
// ChannelData, and on TCP/TLS any other STUN message first flushes it.
//
// # TCP allocations
//
// An Allocate for REQUESTED-TRANSPORT TCP over TCP or TLS (RFC 6062,
// tcprelay.go) gets a listening TCP socket as its relayed address, held in
// Allocation.TCP (nil for UDP allocations, the only thing the packet path
// sees of it). Connect dials the peer from the relayed address on its own
// goroutine; peers connecting in with a permission are announced with a
// ConnectionAttempt. A ConnectionBind, the first request on a new client
// connection, turns that connection into a raw pipe to the peer
// connection: two copy loops, one on the connection's reader goroutine,
// with one buffer each. Peer connections are found by CONNECTION-ID in one
// server-wide index; unbound ones close after 30 s; the allocation's
// removal closes them all.
//
// # One table
//
// Every listener shares one allocations.Table, so per-user quotas hold
// across UDP, TCP and TLS, on every port.
//
// With Config.Fleet (package cluster) they also hold across the nodes of a
// fleet: an Allocate asks the fleet before it enters the table (fleet.go),
// on the control plane only and within the fleet's own short timeout, and
// a node that is draining or full sends the client to the fleet's best
// other node (300 Try Alternate). Without it, nothing changes.
//
// # Port 443
//
// Stream listeners route each connection before answering it, in a chain
// of steps on its own goroutine (package sniff; stream.go's handle): a
// PROXY protocol header is read only from Config.ProxyProtocolFrom and
// closes the connection from anyone else; a TLS ClientHello is parsed
// without being consumed, and TLS that is not TURN (another SNI than
// WebConfig.TURNHosts, or ALPN offering only other protocols), like plain
// HTTP on a tcp+tls listener, is forwarded byte for byte to
// WebConfig.Backend, or answered with a built-in page. Certificates may
// come from ACME (ACMEConfig), whose TLS-ALPN-01 challenge is answered on
// these same listeners. Every wait before a connection is routed is
// bounded by Config.HandshakeTimeout.
//
// # UDP 443 shared with QUIC (HTTP/3)
//
// With QUICConfig.Backend, a UDP listener forwards what is not STUN/TURN
// to a QUIC server (quic.go). The first byte decides (RFC 9443, which
// updates RFC 7983's table): 0-3 is STUN, unless it is no STUN message
// (no magic cookie) from a client with a flow; 64-79 is ChannelData from a
// client with an allocation on this listener, else a QUIC short header;
// every other byte is QUIC. A datagram opens a flow only if it can start or
// continue a QUIC connection: the fixed bit set, and a long header in at
// least 1200 bytes (RFC 9000 §14.1); short headers may (a client's NAT
// rebinding, RFC 9000 §9.3). Anything else from a client without a flow is
// dropped (no_allocation) as without QUIC sharing.
//
// A flow is one client address (IP and port) on one listener socket: a
// UDP socket connected to the backend, so the backend sees one peer per
// client and the kernel filters what may answer, and a goroutine that reads
// it and sends the answers from the listener socket the client used. The
// listener goroutine never waits on a flow: it finds the flow in its
// socket's own map (SO_REUSEPORT keeps a client on one socket, so the map's
// mutex is uncontended), sends with a non-blocking sendmsg, and opens flows
// (a socket and a goroutine) only within the caps: MaxFlows in total and
// MaxFlowsPerClient per IPv4 address or IPv6 /64, over which datagrams are
// dropped and counted (quic_flow_limit). A flood of datagrams from many
// ports thus costs at most MaxFlows sockets, goroutines and 1.5 KiB
// buffers. Only the client's datagrams keep a flow alive (RFC 4787 REQ-6);
// after IdleTimeout without one, its goroutine, woken by a read deadline
// set when the flow was last due (never per datagram), ends it. With
// BackendProxyProtocol each datagram to the backend starts with a PROXY v2
// header (UDP over IPv4 or IPv6; the PROXY protocol has no connection to
// prefix over UDP), copied in front of it into a buffer of the listener's.
//
// Cost (BenchmarkListenerClassify, 32-datagram batches, 2-core VM): with
// QUIC sharing off, the listener tests one nil pointer per datagram: 75 ns
// per dropped ChannelData datagram before and after, 430-450 ns relayed.
// On, ChannelData of an allocation takes the same one table lookup as
// without it (77-81 ns dropped, 430 ns relayed); a QUIC datagram costs
// 1.8 µs on the listener goroutine, mostly its sendmsg, with or without a
// PROXY header. Through a flow, a 1200-byte echo round trip on loopback
// takes 12.4 µs against 6.1 µs direct (BenchmarkQUICRoundTrip). Neither
// direction allocates in steady state (TestQUICForwardAllocatesNothing).
//
// # Observability
//
// Stats, Sessions and RelayAddresses are computed when called (a metrics
// scrape, an admin request): they load the atomic counters the data plane
// keeps anyway (drops, per-allocation traffic) and walk the table without
// locking it. Everything else they report is counted on the control plane
// (requests, authentication, TLS handshakes, allocation creation and
// removal), so observing the server adds no work per packet. Ready and
// State report the lifecycle (starting, ready, draining, stopping) for
// health checks; SetDraining is the draining flag. Kick and KickUser end
// allocations for operators. With Config.Usage, every allocation's end
// (and, every Config.UsageInterval, each long one) makes a UsageRecord
// of what it relayed (usage.go): on the control plane, from the same
// per-allocation counters, handed to a sink that never blocks (package
// usage). With Config.DiscoverExternalIP, Start asks
// STUN servers for the public address of each relay address before it
// binds anything (external.go, with the STUN client in package
// internal/stunclient).
package relay
