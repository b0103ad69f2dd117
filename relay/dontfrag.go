package relay

import (
	"errors"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay/proto"
)

// DONT-FRAGMENT (RFC 8656 §18.9): "This attribute is used by the client to
// request that the server set the DF (Don't Fragment) bit in the IP header
// when relaying the application data onward to the peer and for
// determining the server capability in Allocate requests."
//
// In an Allocate, it sets DF on the relay socket for the allocation's
// life (on Linux: socket options, icmp_linux.go): every datagram to a peer
// leaves with DF, and one larger than the path MTU the kernel knows is
// dropped (write_failed) instead of fragmented. Where DF cannot be set the
// Allocate is answered 420 (§7.2).
//
// In a Send indication, on an allocation made without it: "If the server is
// unable to set the DF bit on outgoing UDP datagrams when this attribute is
// present, then the server acts as if the DONT-FRAGMENT attribute is an
// unknown comprehension-required attribute (and thus the Send indication is
// discarded)" (§11.2). Linux cannot set DF on one IPv4 datagram (there is
// no per-datagram control), so the first such Send indication turns DF on
// for the relay socket, once, and from then on the allocation is as if
// its Allocate had carried DONT-FRAGMENT. The alternative, discarding the
// Send indication, would lose data clients send this way today (and a
// datagram within the path MTU already leaves Linux with DF set: the
// default IP_PMTUDISC_WANT only fragments what exceeds it). Where DF
// cannot be set at all, the Send indication is discarded as §11.2 says.

// errDontFragment reports that relay sockets cannot send with DF here.
var errDontFragment = errors.New("relay: DF bit not supported on this system")

// errUnknownDontFragment answers an Allocate with DONT-FRAGMENT where DF
// cannot be set. RFC 8656 §7.2: "If yes, and the server does not support
// sending UDP datagrams with the DF bit set to 1 (see Sections 14 and 15),
// then the server treats the DONT-FRAGMENT attribute in the Allocate
// request as an unknown comprehension-required attribute."
func errUnknownDontFragment() error {
	return &stunError{code: stun.CodeUnknownAttribute, reason: "Unknown Attribute: DF bit not supported",
		extra: []stun.Setter{stun.UnknownAttributes{stun.AttrDontFragment}}}
}

// dontFragmentOK reports whether a Send indication msg of allocation a may
// be relayed as far as DONT-FRAGMENT goes (see above): it may when msg has
// none, or DF is (or can now be) set on the relay socket. HOT: without
// DONT-FRAGMENT, or once DF is set, it costs an attribute scan and an
// atomic load.
func (s *Server) dontFragmentOK(a *allocations.Allocation, msg *stun.Message) bool {
	if !proto.HasDontFragment(msg) || a.DontFragment.Load() {
		return true
	}
	if err := setDontFragment(a); err != nil {
		return false
	}
	if !a.DontFragment.Swap(true) {
		s.log.Debug("DF set on relay socket for a Send indication with DONT-FRAGMENT", "id", a.ID, "relayed", a.Relayed.String())
	}
	return true
}
