package relay

import (
	"errors"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
)

// Fleet is what a fleet of relays sharing state (package cluster) adds to
// one relay's Allocate: quotas counted across every node, and another node
// to send clients to. Config.Fleet nil is a relay on its own, exactly as
// before.
//
// Its methods run on the control plane (the request's goroutine), never on
// the data plane, and must return within their own short timeout whatever
// the shared state does: a fleet that cannot be reached admits (the local
// quotas of Config still hold) rather than stopping allocation.
type Fleet interface {
	// Admit counts a, not yet in the table, against the fleet-wide
	// quotas of its user and client address. A refusal wraps
	// allocations.ErrQuota (486 Allocation Quota Reached).
	Admit(a *allocations.Allocation) error
	// Release uncounts a: it was refused locally after Admit, or it has
	// been removed. It must not block.
	Release(a *allocations.Allocation)
	// Alternate returns the transport address of the best other node for
	// a client on ft (same transport, same address family as the client),
	// or false when there is none.
	Alternate(ft allocations.FiveTuple) (netip.AddrPort, bool)
}

// create puts a into the table for lifetime, counting it against the
// fleet's quotas first when there is a fleet.
func (r *request) create(a *allocations.Allocation, lifetime time.Duration) error {
	f := r.s.cfg.Fleet
	if f == nil {
		return r.s.table.Create(a, lifetime)
	}
	if err := f.Admit(a); err != nil {
		return err
	}
	err := r.s.table.Create(a, lifetime)
	if err == nil {
		return nil
	}
	f.Release(a)
	if errors.Is(err, allocations.ErrCapacity) {
		// This node is full (limits.total_quota): another node of the
		// fleet may not be.
		if alt := r.tryAlternate("this server is full"); alt != nil {
			return alt
		}
	}
	return err
}

// tryAlternate is the 300 Try Alternate answer pointing at the fleet's best
// other node for this client, or nil without a fleet or another node.
// RFC 8489 §10: "The server MUST include at least one ALTERNATE-SERVER
// attribute in the error response, which MUST contain an IP address of the
// same address family as the source IP address of the request message."
// Only authenticated Allocates get here, as §10 also asks (a 300 "MUST
// only be sent if the request included a USERNAME attribute and a valid
// MESSAGE-INTEGRITY attribute").
func (r *request) tryAlternate(why string) error {
	f := r.s.cfg.Fleet
	if f == nil {
		return nil
	}
	alt, ok := f.Alternate(r.ft)
	if !ok || alt.Addr().Is4() != r.ft.Client.Addr().Unmap().Is4() {
		return nil
	}
	return &stunError{code: stun.CodeTryAlternate, reason: "Try Alternate: " + why,
		extra: []stun.Setter{alternateServer(alt)}}
}

// releaseFleet uncounts a removed allocation from the fleet's quotas.
func (s *Server) releaseFleet(a *allocations.Allocation) {
	if s.cfg.Fleet != nil {
		s.cfg.Fleet.Release(a)
	}
}
