package main

import (
	"sync/atomic"
	"time"
)

// counters are the totals of one run, written by the data path and
// sampled by the main goroutine.
type counters struct {
	sent     atomic.Uint64 // frames the clients sent
	toPeer   atomic.Uint64 // datagrams the peers received (relayed client -> peer)
	toClient atomic.Uint64 // frames the clients received (relayed peer -> client)
	sendErrs atomic.Uint64 // sends the local kernel refused
	lost     atomic.Uint64 // in flight when a flow stalled (flat out only)
}

// pacing describes how a data path sends.
type pacing struct {
	rate   float64 // packets per second for this worker; 0: flat out
	window int     // flat out: frames in flight per flow
}

// stallTimeout: a flat-out flow that received nothing for this long
// counts what it had in flight as lost and sends a fresh window. Round
// trips on loopback take well under a millisecond unless queues are full,
// and a server that drops (full socket buffers) should lose throughput for
// its drops, not for the generator's patience.
const stallTimeout = 20 * time.Millisecond
