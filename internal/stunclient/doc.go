// Package stunclient is the STUN client of external_ip = "auto": it asks
// STUN servers for the public address a relay address is seen as behind
// NAT (a Binding request, RFC 8489 §7), for package relay to advertise in
// XOR-RELAYED-ADDRESS. It knows nothing of the relay: relay.Server calls
// PublicIP once per relay address at start, before any listener is bound.
//
// # Invariants
//
//   - Every wait is bounded: 2 s per server (retransmitting, RFC 8489
//     §6.2.1: "A client SHOULD retransmit a STUN request message starting
//     with an interval of RTO ("Retransmission TimeOut"), doubling after
//     each retransmission"), and the caller's context over the whole
//     search; a context that ends interrupts a read at once.
//   - The request leaves from a socket bound on the address asked about,
//     so the answer is about that address; only servers of its family are
//     asked.
//   - Only the server's own answer to this transaction counts: datagrams
//     from any other source, or for another transaction ID, are ignored,
//     and an error response fails that server (the next one is asked).
//   - It starts no goroutine that outlives a call, and keeps no state.
package stunclient
