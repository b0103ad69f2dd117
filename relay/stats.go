package relay

import (
	"sync"
	"sync/atomic"

	"github.com/postern/postern/allocations"
)

// DropReason says why the data plane discarded a packet.
type DropReason uint8

// Reasons for dropping a packet.
const (
	DropNoAllocation DropReason = iota // data on a 5-tuple with no allocation
	DropNoPermission                   // no permission or channel for the peer (RFC 8656 §11, §12)
	DropPolicy                         // the peer policy denies the address
	DropMalformed                      // undecodable ChannelData or Send indication
	DropTooLarge                       // a datagram too large for a Data indication
	DropOverload                       // the request queue was full
	DropWriteFailed                    // the client or peer socket refused the write
	DropRateLimited                    // an unauthenticated client's answer over its rate limit
	numDropReasons
)

var dropNames = [numDropReasons]string{"no_allocation", "no_permission", "policy", "malformed", "too_large", "overload", "write_failed", "rate_limited"}

// String returns the reason as a metric label value.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// stats are the server-wide counters. Per-allocation traffic lives in each
// Allocation; what ended allocations relayed is folded in here.
type stats struct {
	drops         [numDropReasons]atomic.Uint64
	created       atomic.Uint64
	ended         [4]atomic.Uint64 // by allocations.Reason
	endedToPeer   allocations.Counter
	endedToClient allocations.Counter
	authFailures  atomic.Uint64
	staleNonces   atomic.Uint64

	mu sync.Mutex
	// mu guards the following.
	lastToPeer, lastToClient Traffic
}

// monotonic raises st's traffic totals to at least the last ones reported.
func (s *stats) monotonic(st *Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ToPeer = maxTraffic(st.ToPeer, s.lastToPeer)
	st.ToClient = maxTraffic(st.ToClient, s.lastToClient)
	s.lastToPeer, s.lastToClient = st.ToPeer, st.ToClient
}

func maxTraffic(a, b Traffic) Traffic {
	return Traffic{Packets: max(a.Packets, b.Packets), Bytes: max(a.Bytes, b.Bytes)}
}

func (s *stats) drop(r DropReason) { s.drops[r].Add(1) }

// Traffic is packets and bytes relayed in one direction.
type Traffic struct {
	Packets, Bytes uint64
}

// Stats is a snapshot of the server's counters, for metrics and admin.
type Stats struct {
	AllocationsActive  int
	AllocationsCreated uint64
	// AllocationsEnded counts ended allocations by why they ended.
	AllocationsEnded map[string]uint64
	// ToPeer and ToClient are totals over every allocation, live or ended.
	ToPeer, ToClient Traffic
	Drops            map[string]uint64
	AuthFailures     uint64 // wrong credentials, unknown or expired users
	StaleNonces      uint64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{
		AllocationsActive:  s.table.Len(),
		AllocationsCreated: s.stats.created.Load(),
		AllocationsEnded:   map[string]uint64{},
		Drops:              map[string]uint64{},
		AuthFailures:       s.stats.authFailures.Load(),
		StaleNonces:        s.stats.staleNonces.Load(),
	}
	for _, r := range []allocations.Reason{allocations.ReasonExpired, allocations.ReasonDeleted, allocations.ReasonClosed} {
		st.AllocationsEnded[r.String()] = s.stats.ended[r].Load()
	}
	for r := range numDropReasons {
		st.Drops[r.String()] = s.stats.drops[r].Load()
	}
	// Ended allocations are folded in just after they leave the table, so a
	// sum taken in between can come out low once: never report less than
	// before, so the totals stay monotonic counters.
	defer s.stats.monotonic(&st)
	st.ToPeer.Packets, st.ToPeer.Bytes = s.stats.endedToPeer.Load()
	st.ToClient.Packets, st.ToClient.Bytes = s.stats.endedToClient.Load()
	s.table.Range(func(a *allocations.Allocation) bool {
		p, b := a.ToPeer.Load()
		st.ToPeer.Packets += p
		st.ToPeer.Bytes += b
		p, b = a.ToClient.Load()
		st.ToClient.Packets += p
		st.ToClient.Bytes += b
		return true
	})
	return st
}
